// How the scenario scripts end: `main`'s exit code, or 1 with the error when it throws; `cleanup` (stopping the
// processes they started) either way.

export function runScenario(main: () => Promise<number>, cleanup: () => Promise<void>): void {
  main()
    .then(async (code) => {
      await cleanup();
      process.exit(code);
    })
    .catch(async (err: unknown) => {
      process.stderr.write(`scenario failed: ${(err as Error).stack ?? String(err)}\n`);
      await cleanup();
      process.exit(1);
    });
}
