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

/**
 * How the benchmarks that print `name: value` figures end: the lines `main` returns on stdout, or its error on stderr
 * and exit code 1. `main` stops what it started itself (its own `finally`).
 */
export async function printFigures(script: string, main: () => Promise<string[]>): Promise<void> {
  try {
    const lines = await main();
    process.stdout.write(lines.join('\n') + '\n');
  } catch (err) {
    process.stderr.write(`${script}: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
