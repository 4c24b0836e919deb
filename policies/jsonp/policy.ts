// jsonp: wraps the response in a call of the function the request names, `cb(<body>);`, for clients that load data
// through a <script> element (Azure API Management's jsonp). A request without the query parameter gets the response
// as it is. The callback name is the attacker's to choose, and what the gateway writes runs as script in the page that
// asked: only a JavaScript name or a dotted path of names is written (`cb`, `jQuery123_456`, `app.handlers.load`);
// anything else is answered 400, never echoed.
import { request, response, config, respondProblem, CONTINUE } from "@gatehouse/policy-sdk";

export function on_outbound(): i32 {
  const callback = request.queryParam(config.getString("callbackParameterName")!);
  if (callback === null) return CONTINUE;
  if (!isCallbackName(callback)) {
    return respondProblem(400, "Bad Request", "the callback must be a JavaScript name or a dotted path of names (at most 128 characters)");
  }
  const body = response.bodyText();
  const text = callback + "(" + (body === null || body.length == 0 ? "null" : body) + ");";
  response.setBody(Uint8Array.wrap(String.UTF8.encode(text)));
  response.setHeader("content-type", "application/javascript; charset=utf-8");
  // What the browser must not take for anything else than script.
  response.setHeader("x-content-type-options", "nosniff");
  return CONTINUE;
}

/** Letters, digits, `_` and `$` in dot-separated names, none starting with a digit. */
function isCallbackName(name: string): bool {
  if (name.length == 0 || name.length > 128) return false;
  let start = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const letter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f || c == 0x24;
    const digit = c >= 0x30 && c <= 0x39;
    if (c == 0x2e) {
      if (start) return false;
      start = true;
    } else if (letter || (digit && !start)) {
      start = false;
    } else {
      return false;
    }
  }
  return !start;
}
