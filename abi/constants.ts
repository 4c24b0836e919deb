// Constants of policy ABI v1 (abi/policy-abi.md). The SDK's AssemblyScript side mirrors these numbers.

export const HOST_MODULE = 'gatehouse:host/v1';
export const KERNEL_MODULE = 'extism:host/env';
export const WASI_MODULE = 'wasi_snapshot_preview1';
/** Reserved for the host's own instrumentation; a module may not import from it. */
export const INTERNAL_MODULE = 'gatehouse:internal';
export const DESCRIBE_EXPORT = 'gatehouse_policy_v1';

export const PHASES = ['inbound', 'backend', 'outbound', 'on-error'] as const;
export type Phase = (typeof PHASES)[number];

export const PHASE_EXPORTS: Record<Phase, string> = {
  inbound: 'on_inbound',
  backend: 'on_backend',
  outbound: 'on_outbound',
  'on-error': 'on_error',
};

export const Field = {
  REQUEST_METHOD: 1,
  REQUEST_PATH: 2,
  REQUEST_QUERY: 3,
  REQUEST_QUERY_PARAM: 4,
  REQUEST_HEADER: 5,
  REQUEST_BODY: 6,
  CLIENT_ADDRESS: 7,
  RESPONSE_STATUS: 8,
  RESPONSE_HEADER: 9,
  RESPONSE_BODY: 10,
  VARIABLE: 11,
  CONFIG: 12,
  ROUTE_PARAM: 13,
  BACKEND_URL: 14,
  CONTEXT: 15,
  ERROR: 16,
} as const;

export const Status = {
  OK: 0,
  NOT_FOUND: -1,
  READ_ONLY: -2,
  NOT_DECLARED: -3,
  INVALID_VALUE: -4,
  UNKNOWN_FIELD: -5,
} as const;

/** `effect` returns this while the host has no result yet. */
export const EFFECT_PENDING = -1;

export const EffectKind = {
  COUNTER: 1,
  HTTP: 2,
  /** A lease on a concurrency slot, released by the host when the exchange ends (1.1). */
  LEASE: 3,
  /** Adds the exchange's body bytes to a counter when the exchange ends (1.1). */
  METER: 4,
  /** The signing keys of an OpenID Connect issuer, which the gateway fetches and keeps (1.2). */
  KEYS: 5,
} as const;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The CONFIG name that lists, comma-separated, the top-level configuration keys the gateway computes for each call
 * (NOT_FOUND when none): a module reads it once and does not keep those keys' values between calls (section 3).
 */
export const COMPUTED_CONFIG_KEYS = '$computed';

/** Most rounds of effects one handler call may take (abi/policy-abi.md, section 5). */
export const MAX_EFFECT_ROUNDS = 4;
/** Most distinct effects one handler call may ask for, over all its rounds (section 5). */
export const MAX_EFFECTS_PER_CALL = 16;
/** Most effects performed with I/O for one request, by all the policies of its chain (section 5). */
export const MAX_EFFECTS_PER_REQUEST = 64;

/** The functions of `gatehouse:host/v1` and their signatures (abi/policy-abi.md, section 4): what a module may import. */
export const HOST_FUNCTIONS: Readonly<Record<string, string>> = {
  get: '(i32, i32, i32, i32, i32) -> i32',
  set: '(i32, i32, i32, i32, i32) -> i32',
  add: '(i32, i32, i32, i32, i32) -> i32',
  remove: '(i32, i32, i32) -> i32',
  list: '(i32, i32, i32) -> i32',
  respond: '(i32) -> i32',
  effect: '(i32, i32, i32, i32, i32) -> i32',
  log: '(i32, i32, i32) -> ()',
  now: '() -> f64',
  fail: '(i32, i32) -> ()',
  verify: '(i32, i32, i32, i32, i32, i32, i32, i32) -> i32',
  metric: '(i32, i32, f64, i32, i32) -> i32',
};

/** The Extism kernel (`extism:host/env`) as the pinned Extism JS SDK provides it: addresses and lengths are i64. */
export const KERNEL_FUNCTIONS: Readonly<Record<string, string>> = {
  alloc: '(i64) -> i64',
  free: '(i64) -> ()',
  length: '(i64) -> i64',
  length_unsafe: '(i64) -> i64',
  load_u8: '(i64) -> i32',
  load_u64: '(i64) -> i64',
  store_u8: '(i64, i32) -> ()',
  store_u64: '(i64, i64) -> ()',
  input_offset: '() -> i64',
  input_length: '() -> i64',
  input_load_u8: '(i64) -> i32',
  input_load_u64: '(i64) -> i64',
  output_set: '(i64, i64) -> ()',
  error_set: '(i64) -> ()',
  error_get: '() -> i64',
  config_get: '(i64) -> i64',
  var_get: '(i64) -> i64',
  var_set: '(i64, i64) -> ()',
  http_request: '(i64, i64) -> i64',
  http_status_code: '() -> i32',
  http_headers: '() -> i64',
  log_trace: '(i64) -> ()',
  log_debug: '(i64) -> ()',
  log_info: '(i64) -> ()',
  log_warn: '(i64) -> ()',
  log_error: '(i64) -> ()',
  get_log_level: '() -> i32',
};

/** A page of WebAssembly linear memory, the unit of a memory's limits. */
export const WASM_PAGE_BYTES = 65536;
/** The largest memory cap a binding may have (limits.memoryBytes), 1 GiB: a module whose memory starts larger is refused. */
export const MAX_MEMORY_BYTES = 1024 * 1024 * 1024;

/** What every export the host calls looks like (the descriptor and the phase handlers). */
export const EXPORT_SIGNATURE = '() -> i32';
