// Raw bindings of Gatehouse policy ABI v1 (abi/policy-abi.md, section 4): the `gatehouse:host/v1` imports with
// i32 pointer/length arguments, the field codes and the status codes. Policy authors normally use the functions of
// `index.ts` instead; these are exported for the rare case that needs the ABI directly.

// @ts-ignore: decorator
@external("gatehouse:host/v1", "get")
export declare function host_get(field: i32, namePtr: usize, nameLen: i32, buf: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "set")
export declare function host_set(field: i32, namePtr: usize, nameLen: i32, valuePtr: usize, valueLen: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "add")
export declare function host_add(field: i32, namePtr: usize, nameLen: i32, valuePtr: usize, valueLen: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "remove")
export declare function host_remove(field: i32, namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "list")
export declare function host_list(field: i32, buf: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "respond")
export declare function host_respond(status: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "effect")
export declare function host_effect(kind: i32, reqPtr: usize, reqLen: i32, buf: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "log")
export declare function host_log(level: i32, ptr: usize, len: i32): void;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "now")
export declare function host_now(): f64;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "fail")
export declare function host_fail(ptr: usize, len: i32): void;

/** Field codes (ABI section 4.1). */
export namespace Field {
  export const REQUEST_METHOD: i32 = 1;
  export const REQUEST_PATH: i32 = 2;
  export const REQUEST_QUERY: i32 = 3;
  export const REQUEST_QUERY_PARAM: i32 = 4;
  export const REQUEST_HEADER: i32 = 5;
  export const REQUEST_BODY: i32 = 6;
  export const CLIENT_ADDRESS: i32 = 7;
  export const RESPONSE_STATUS: i32 = 8;
  export const RESPONSE_HEADER: i32 = 9;
  export const RESPONSE_BODY: i32 = 10;
  export const VARIABLE: i32 = 11;
  export const CONFIG: i32 = 12;
  export const ROUTE_PARAM: i32 = 13;
  export const BACKEND_URL: i32 = 14;
  export const CONTEXT: i32 = 15;
  export const ERROR: i32 = 16;
}

/** Status codes (ABI section 4.3). */
export namespace Status {
  export const OK: i32 = 0;
  export const NOT_FOUND: i32 = -1;
  export const READ_ONLY: i32 = -2;
  export const NOT_DECLARED: i32 = -3;
  export const INVALID_VALUE: i32 = -4;
  export const UNKNOWN_FIELD: i32 = -5;
}

/** Effect kinds (ABI section 5). */
export namespace EffectKind {
  export const COUNTER: i32 = 1;
  export const HTTP: i32 = 2;
  export const LEASE: i32 = 3;
  export const METER: i32 = 4;
  export const KEYS: i32 = 5;
}

/** `effect` returns this while the host has no result yet. */
export const EFFECT_PENDING: i32 = -1;

/** Log levels of the `log` import. */
export namespace LogLevel {
  export const TRACE: i32 = 0;
  export const DEBUG: i32 = 1;
  export const INFO: i32 = 2;
  export const WARN: i32 = 3;
  export const ERROR: i32 = 4;
}

// @ts-ignore: decorator
@external("gatehouse:host/v1", "verify")
export declare function host_verify(
  algPtr: usize,
  algLen: i32,
  keyPtr: usize,
  keyLen: i32,
  dataPtr: usize,
  dataLen: i32,
  sigPtr: usize,
  sigLen: i32,
): i32;

// @ts-ignore: decorator
@external("gatehouse:host/v1", "metric")
export declare function host_metric(namePtr: usize, nameLen: i32, value: f64, dimsPtr: usize, dimsLen: i32): i32;
