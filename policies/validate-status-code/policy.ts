// validate-status-code: the backend's status must be one the operation declares (Azure API Management's
// validate-status-code, which reads the declared responses from the API's definition; here they are the policy's
// configuration). A status not declared is prevented (502 for the client: the backend broke its contract), detected
// (a warning in the log and the errors variable; the response goes on), or ignored.
import { response, config, vars, log, replaceResponseWithProblem, CONTINUE } from "@gatehouse/policy-sdk";

export function on_outbound(): i32 {
  const status = response.status();
  if (declared(status)) return CONTINUE;
  const action = config.getString("unspecifiedStatusCodeAction", "prevent")!;
  if (action == "ignore") return CONTINUE;
  const finding = "status " + status.toString() + " is not declared";
  if (action == "detect") {
    log.warn("validate-status-code: " + finding);
    vars.set(config.getString("errorsVariable", "validation-errors")!, finding);
    return CONTINUE;
  }
  return replaceResponseWithProblem(502, "Bad Gateway", "the backend answered with a status the API does not declare");
}

function declared(status: i32): bool {
  const codes = config.getStringArray("statusCodes");
  const text = status.toString();
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code == text) return true;
    if (code.endsWith("XX") && code.charAt(0) == text.charAt(0)) return true;
  }
  return false;
}
