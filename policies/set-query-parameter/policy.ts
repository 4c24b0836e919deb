// set-query-parameter: sets, adds to, keeps or deletes a query parameter of the request sent to the backend (Azure API
// Management's set-query-parameter). Each of `values` becomes one `name=value` pair, so several values send the
// parameter several times. Names and values are given decoded; the host encodes them.
import { request, config, CONTINUE } from "@gatehouse/policy-sdk";

// The configuration never changes for an instance: read on the first call.
let loaded = false;
let name = "";
let action = "override";
let values = new Array<string>();

function load(): void {
  name = config.getString("name", "")!;
  action = config.getString("existsAction", "override")!;
  values = config.getStringArray("values");
  loaded = true;
}

export function on_inbound(): i32 {
  return apply();
}

export function on_backend(): i32 {
  return apply();
}

function apply(): i32 {
  if (!loaded) load();
  if (action == "delete") {
    request.removeQueryParam(name);
    return CONTINUE;
  }
  // skip: a parameter the client sent is left as it is (read only here: a host call saved on the other actions).
  if (action == "skip" && request.queryParam(name) !== null) return CONTINUE;
  for (let i = 0; i < values.length; i++) {
    // override replaces every pair of that name with the first value (in the first one's place); the rest are added.
    if (i == 0 && action != "append") request.setQueryParam(name, values[i]);
    else request.addQueryParam(name, values[i]);
  }
  return CONTINUE;
}
