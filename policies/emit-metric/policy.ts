// emit-metric: adds a value to a custom metric, with dimensions taken from the request (Azure API Management's
// emit-metric). The gateway sums it by name and dimensions (`gatehouse_policy_metric_total` on /metrics). Runs in any
// phase; in outbound and on-error the response status is available as a dimension.
import { config, emitMetric, parseJson, valueFrom, JsonValue, CONTINUE } from "@gatehouse/policy-sdk";

/** Dimension values longer than the host accepts are cut, so that an oversized header cannot fail the request. */
const MAX_VALUE = 256;

let loaded = false;
let metricName = "";
let value: f64 = 1;
let dimensions: JsonValue[] = [];

function load(): void {
  metricName = config.getString("name")!;
  value = config.getFloat("value", 1);
  const dims = config.getJson("dimensions");
  if (dims !== null) {
    const list = parseJson(dims)!;
    for (let i = 0; i < list.length; i++) dimensions.push(list.at(i)!);
  }
  loaded = true;
}

export function on_inbound(): i32 {
  return emit();
}
export function on_backend(): i32 {
  return emit();
}
export function on_outbound(): i32 {
  return emit();
}
export function on_error(): i32 {
  return emit();
}

function emit(): i32 {
  if (!loaded) load();
  const values = new Map<string, string>();
  for (let i = 0; i < dimensions.length; i++) {
    const d = dimensions[i];
    let v = dimensionValue(d);
    if (v.length > MAX_VALUE) v = v.substring(0, MAX_VALUE);
    values.set(d.get("name")!.asString()!, v);
  }
  emitMetric(metricName, value, values);
  return CONTINUE;
}

/** The dimension's value for this request; "" when its source is absent. */
function dimensionValue(d: JsonValue): string {
  const fixed = d.get("value");
  if (fixed !== null) return fixed.asString("")!;
  const key = d.get("key");
  const v = valueFrom(d.get("from")!.asString("")!, key !== null ? key.asString("")! : "");
  return v !== null ? v : "";
}
