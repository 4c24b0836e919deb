// Settings of the benchmark and scenario scripts, read from the environment.

/** A positive integer from the environment variable `name`, or `fallback` when unset; a bad value stops the script. */
export function positiveFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, not ${raw}`);
  return value;
}
