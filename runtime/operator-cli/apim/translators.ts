// One translator per APIM policy element: what Gatehouse entry it becomes, with its attributes and child elements.
// A translator takes what it understands and reports the rest through `ctx.problem` (with the element's line): the
// importer never drops anything silently. A policy Gatehouse gains later is one more entry of TRANSLATORS.

import { isExpression, translateExpression } from './expressions.ts';
import type { XmlElement } from './xml.ts';

export type Section = 'inbound' | 'backend' | 'outbound' | 'on-error';
export type Entry = Record<string, unknown>;

export interface TranslateContext {
  section: Section;
  /** Something of `element` that is not translated: listed with its line, and the command fails unless --partial. */
  problem(element: XmlElement, message: string): void;
  /** A difference the reader should know that loses nothing: listed as a note, the command does not fail. */
  note(element: XmlElement, message: string): void;
  /** Translates the policies inside an element (choose's branches). */
  chain(elements: readonly XmlElement[]): Entry[];
}

export type Translator = (element: XmlElement, ctx: TranslateContext) => Entry | null;

/** A text value as Gatehouse takes it: literal text, `{expr}` where the policy computes it, or null (reported). */
function value(element: XmlElement, text: string, ctx: TranslateContext, computed: boolean, what: string): string | { expr: string } | null {
  if (!isExpression(text)) return text;
  const translated = translateExpression(text);
  if ('problem' in translated) {
    ctx.problem(element, `${what}: ${translated.problem}`);
    return null;
  }
  if (!computed) {
    ctx.problem(element, `${what}: the Gatehouse policy takes no expression here (the expression was ${text.trim()})`);
    return null;
  }
  return { expr: translated.cel };
}

/** The element's attributes as `read` takes them; attributes left unread are reported. */
function attributes(element: XmlElement, ctx: TranslateContext, known: readonly string[], ignored: Record<string, string> = {}): Map<string, string> {
  for (const [name, v] of element.attributes) {
    if (known.includes(name)) continue;
    if (name in ignored) continue;
    ctx.problem(element, `attribute ${name}="${v}" of <${element.name}> is not translated`);
  }
  return element.attributes;
}

/** Child elements: those named `names` are returned in order; any other is reported. */
function children(element: XmlElement, ctx: TranslateContext, names: readonly string[]): XmlElement[] {
  for (const child of element.children) {
    if (!names.includes(child.name)) ctx.problem(child, `<${child.name}> inside <${element.name}> is not translated`);
  }
  return element.children.filter((c) => names.includes(c.name));
}

function integer(element: XmlElement, ctx: TranslateContext, name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (isExpression(text)) {
    ctx.problem(element, `${name}: the Gatehouse policy takes a number here, not an expression (${text})`);
    return undefined;
  }
  const n = Number(text);
  if (!Number.isInteger(n)) ctx.problem(element, `${name}="${text}" is not a whole number`);
  return Number.isInteger(n) ? n : undefined;
}

function bool(text: string | undefined): boolean | undefined {
  return text === undefined ? undefined : text.trim().toLowerCase() === 'true';
}

/** Leaves out what is undefined, so that the YAML shows what was given. */
function defined(entry: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined && v !== null));
}

function policy(name: string, config: Record<string, unknown>): Entry {
  return { policy: name, config: defined(config) };
}

/** Where a counter key comes from, for the common expressions of APIM's counter-key; null when none fits (reported). */
function counterKey(element: XmlElement, ctx: TranslateContext, text: string | undefined, attribute: string): Record<string, string> | null {
  if (text === undefined) return null;
  const translated = isExpression(text) ? translateExpression(text) : null;
  const cel = translated && 'cel' in translated ? translated.cel : null;
  const from = (source: string, name?: string): Record<string, string> => (name === undefined ? { from: source } : { from: source, name });
  const literal = (s: string) => JSON.parse(s) as string;
  let m: RegExpExecArray | null;
  if (cel === 'request.clientAddress') return from('client-address');
  if (cel !== null && (m = /^request\.headers\[\?("(?:[^"\\]|\\.)*")\]\.orValue\(.*\)$/.exec(cel))) return from('header', literal(m[1]!));
  if (cel !== null && (m = /^request\.query\[\?("(?:[^"\\]|\\.)*")\]\.orValue\(.*\)$/.exec(cel))) return from('query', literal(m[1]!));
  if (cel !== null && (m = /^variables\[\??("(?:[^"\\]|\\.)*")\](?:\.orValue\(.*\))?$/.exec(cel))) return from('variable', literal(m[1]!));
  if (cel !== null && (m = /^jwt\[\?("(?:[^"\\]|\\.)*")\]\.orValue\(.*\)$/.exec(cel))) return from('claim', literal(m[1]!));
  ctx.problem(element, `${attribute}="${text}": a counter key must be the client address, a header, a query parameter, a variable or a claim`);
  return null;
}

const setHeader: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['name', 'exists-action']);
  const values = children(el, ctx, ['value']);
  if (values.length > 1) ctx.problem(el, `${values.length} <value> elements: Gatehouse's set-header sets one value (the first is kept)`);
  const action = (a.get('exists-action') ?? 'override').toLowerCase();
  const v = values[0] ? value(values[0], values[0].text, ctx, true, 'value') : undefined;
  if (values[0] && v === null) return null;
  return policy('set-header', { name: a.get('name'), existsAction: action, value: action === 'delete' ? undefined : v });
};

const setQueryParameter: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['name', 'exists-action']);
  const values = children(el, ctx, ['value']).map((v) => value(v, v.text, ctx, false, 'value'));
  if (values.includes(null)) return null;
  const action = (a.get('exists-action') ?? 'override').toLowerCase();
  return policy('set-query-parameter', { name: a.get('name'), existsAction: action, values: action === 'delete' ? undefined : values });
};

const setStatus: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['code'], { reason: 'the standard reason phrase is sent' });
  if (a.has('reason')) ctx.problem(el, `reason="${a.get('reason')}": Gatehouse sends the standard reason phrase for the code`);
  const code = a.get('code') ?? '200';
  if (isExpression(code)) {
    const v = value(el, code, ctx, true, 'code');
    return v === null ? null : policy('set-status', { code: v });
  }
  return policy('set-status', { code: integer(el, ctx, 'code', code) });
};

const returnResponse: Translator = (el, ctx) => {
  attributes(el, ctx, []);
  const config: Record<string, unknown> = {};
  const headers: Record<string, unknown> = {};
  for (const child of children(el, ctx, ['set-status', 'set-header', 'set-body'])) {
    if (child.name === 'set-status') {
      const status = setStatus(child, ctx);
      if (status) config.status = (status.config as Record<string, unknown>).code;
    } else if (child.name === 'set-header') {
      const header = setHeader(child, ctx) as { config: { name: string; value?: unknown; existsAction: string } } | null;
      if (header) {
        if (header.config.existsAction === 'delete') ctx.problem(child, 'a header deleted from a response the policy makes: there is none to delete');
        else headers[header.config.name.toLowerCase()] = header.config.value ?? '';
      }
    } else {
      const body = bodyOf(child, ctx, false);
      if (body !== undefined) config.body = body.value;
    }
  }
  if (Object.keys(headers).length > 0) config.headers = headers;
  return policy('return-response', config);
};

const mockResponse: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['status-code', 'content-type'], { index: '' });
  if (a.has('index')) ctx.problem(el, 'index: Gatehouse does not read examples from an API definition; give the body in the configuration');
  return policy('mock-response', { status: integer(el, ctx, 'status-code', a.get('status-code')), contentType: a.get('content-type') });
};

const checkHeader: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['name', 'failed-check-httpcode', 'failed-check-error-message', 'ignore-case']);
  const values = children(el, ctx, ['value']).map((v) => value(v, v.text, ctx, false, 'value'));
  if (values.includes(null)) return null;
  return policy('check-header', {
    name: a.get('name'),
    values: values.length > 0 ? values : undefined,
    ignoreCase: bool(a.get('ignore-case')),
    failedCheckHttpCode: integer(el, ctx, 'failed-check-httpcode', a.get('failed-check-httpcode')),
    failedCheckErrorMessage: a.get('failed-check-error-message'),
  });
};

const ipFilter: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['action']);
  const addresses: string[] = [];
  for (const child of children(el, ctx, ['address', 'address-range'])) {
    if (child.name === 'address') addresses.push(child.text);
    else ctx.problem(child, `<address-range from="${child.attributes.get('from')}" to="${child.attributes.get('to')}">: give it as CIDR ranges (10.0.0.0/8)`);
  }
  return policy('ip-filter', { action: a.get('action'), addresses });
};

const cors: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['allow-credentials', 'terminate-unmatched-request']);
  const config: Record<string, unknown> = { allowCredentials: bool(a.get('allow-credentials')), terminateUnmatchedRequest: bool(a.get('terminate-unmatched-request')) };
  const list = (child: XmlElement, item: string) => children(child, ctx, [item]).map((c) => c.text);
  for (const child of children(el, ctx, ['allowed-origins', 'allowed-methods', 'allowed-headers', 'expose-headers'])) {
    if (child.name === 'allowed-origins') {
      attributes(child, ctx, []);
      config.allowedOrigins = list(child, 'origin');
    } else if (child.name === 'allowed-methods') {
      const m = attributes(child, ctx, ['preflight-result-max-age']);
      config.maxAge = integer(child, ctx, 'preflight-result-max-age', m.get('preflight-result-max-age'));
      config.allowedMethods = list(child, 'method');
    } else {
      attributes(child, ctx, []);
      config[child.name === 'allowed-headers' ? 'allowedHeaders' : 'exposeHeaders'] = list(child, 'header');
    }
  }
  return policy('cors', config);
};

/** APIM's per-API and per-operation limits inside rate-limit are not translated (one limit per binding here). */
const rateLimit: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['calls', 'renewal-period'], { 'retry-after-header-name': '', 'retry-after-variable-name': '', 'remaining-calls-header-name': '', 'remaining-calls-variable-name': '', 'total-calls-header-name': '' });
  for (const name of ['retry-after-header-name', 'retry-after-variable-name', 'remaining-calls-header-name', 'remaining-calls-variable-name', 'total-calls-header-name']) {
    if (a.has(name)) ctx.problem(el, `${name}: Gatehouse sends the standard RateLimit headers (headers: true) under their own names`);
  }
  children(el, ctx, []);
  return policy('rate-limit', { calls: integer(el, ctx, 'calls', a.get('calls')), renewalPeriod: integer(el, ctx, 'renewal-period', a.get('renewal-period')) });
};

const rateLimitByKey: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['calls', 'renewal-period', 'counter-key']);
  const key = counterKey(el, ctx, a.get('counter-key'), 'counter-key');
  if (key === null) return null;
  return policy('rate-limit-by-key', { calls: integer(el, ctx, 'calls', a.get('calls')), renewalPeriod: integer(el, ctx, 'renewal-period', a.get('renewal-period')), counterKey: key });
};

const quotaByKey: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['calls', 'bandwidth', 'renewal-period', 'counter-key']);
  const key = counterKey(el, ctx, a.get('counter-key'), 'counter-key');
  if (key === null) return null;
  return policy('quota-by-key', {
    calls: integer(el, ctx, 'calls', a.get('calls')),
    bandwidth: integer(el, ctx, 'bandwidth', a.get('bandwidth')),
    renewalPeriod: integer(el, ctx, 'renewal-period', a.get('renewal-period')),
    counterKey: key,
  });
};

const limitConcurrency: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['key', 'max-count']);
  if (el.children.length > 0) {
    ctx.problem(el, 'the policies inside <limit-concurrency> are not translated: Gatehouse limits the concurrency of whole requests (put the limit where the section starts)');
  }
  const key = a.get('key');
  const fromKey = key === undefined || !isExpression(key) ? null : counterKey(el, ctx, key, 'key');
  if (key !== undefined && isExpression(key) && fromKey === null) return null;
  if (key !== undefined && !isExpression(key)) ctx.problem(el, `key="${key}": a fixed key is one limit for every request through the policy, which is Gatehouse's default (left out)`);
  return policy('limit-concurrency', { maxCount: integer(el, ctx, 'max-count', a.get('max-count')), counterKey: fromKey ?? undefined });
};

const setBackendService: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['base-url']);
  const url = a.get('base-url');
  if (url === undefined) {
    ctx.problem(el, 'only base-url is translated (backend-id names a backend entity Gatehouse does not have)');
    return null;
  }
  const v = value(el, url, ctx, false, 'base-url');
  return v === null ? null : policy('set-backend-service', { baseUrl: v });
};

const rewriteUri: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['template', 'copy-unmatched-params']);
  const template = a.get('template');
  if (template !== undefined && isExpression(template)) return value(el, template, ctx, false, 'template') as null;
  return policy('rewrite-uri', { template, copyUnmatchedParams: bool(a.get('copy-unmatched-params')) });
};

const setMethod: Translator = (el, ctx) => {
  attributes(el, ctx, []);
  const v = value(el, el.text, ctx, false, 'method');
  return v === null ? null : policy('set-method', { method: v });
};

const findAndReplace: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['from', 'to']);
  const scope = ctx.section === 'inbound' || ctx.section === 'backend' ? 'request' : 'response';
  return policy('find-and-replace', { from: a.get('from'), to: a.get('to'), scope });
};

const jsonToXml: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['apply', 'consider-accept-header'], { 'parse-date': '', 'namespace-separator': '', 'namespace-prefix': '', 'attribute-block-name': '' });
  for (const name of ['parse-date', 'namespace-separator', 'namespace-prefix', 'attribute-block-name']) if (a.has(name)) ctx.problem(el, `${name} is not translated`);
  return policy('json-to-xml', { apply: a.get('apply'), considerAcceptHeader: bool(a.get('consider-accept-header')) });
};

const xmlToJson: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['kind', 'apply', 'consider-accept-header'], { 'always-array-child-elements': '' });
  if (a.has('always-array-child-elements')) ctx.problem(el, 'always-array-child-elements is not translated');
  return policy('xml-to-json', { kind: a.get('kind'), apply: a.get('apply'), considerAcceptHeader: bool(a.get('consider-accept-header')) });
};

const emitMetric: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['name', 'value'], { namespace: '' });
  if (a.has('namespace')) ctx.problem(el, `namespace="${a.get('namespace')}": metrics go to the gateway's own namespace`);
  const dimensions: Record<string, string>[] = [];
  for (const d of children(el, ctx, ['dimension'])) {
    const da = attributes(d, ctx, ['name', 'value']);
    const name = da.get('name') ?? '';
    const given = da.get('value');
    if (given === undefined) {
      // APIM fills some dimensions itself when they have no value.
      const builtIn: Record<string, Record<string, string>> = { 'API ID': { from: 'api' }, 'Operation ID': { from: 'operation' }, 'Client IP': { from: 'client-address' } };
      const found = builtIn[name];
      if (found) dimensions.push({ name: name.replace(/\s+/g, '_'), ...found });
      else ctx.problem(d, `dimension "${name}" without a value: Gatehouse fills only API ID, Operation ID and Client IP`);
      continue;
    }
    const cel = isExpression(given) ? translateExpression(given) : null;
    let m: RegExpExecArray | null;
    if (cel === null) dimensions.push({ name, value: given });
    else if ('cel' in cel && (m = /^request\.headers\[\?"(.*)"\]\.orValue\(.*\)$/.exec(cel.cel))) dimensions.push({ name, from: 'header', key: m[1]! });
    else if ('cel' in cel && (m = /^variables\[\??"(.*)"\](?:\.orValue\(.*\))?$/.exec(cel.cel))) dimensions.push({ name, from: 'variable', key: m[1]! });
    else ctx.problem(d, `dimension "${name}": value ${given} is not translated (a header, a variable or fixed text)`);
  }
  return policy('emit-metric', { name: a.get('name'), value: a.has('value') ? Number(a.get('value')) : undefined, dimensions: dimensions.length > 0 ? dimensions : undefined });
};

const validateJwt: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['header-name', 'query-parameter-name', 'failed-validation-httpcode', 'require-expiration-time', 'clock-skew'], {
    'failed-validation-error-message': '',
    'require-scheme': '',
    'require-signed-tokens': '',
    'output-token-variable-name': '',
    'token-value': '',
  });
  for (const name of ['failed-validation-error-message', 'require-scheme', 'require-signed-tokens', 'output-token-variable-name', 'token-value']) {
    if (a.has(name)) ctx.problem(el, `${name}="${a.get(name)}" is not translated (see policies/validate-jwt/README.md)`);
  }
  const config: Record<string, unknown> = {
    header: a.get('header-name')?.toLowerCase(),
    query: a.get('query-parameter-name'),
    failedValidationHttpCode: integer(el, ctx, 'failed-validation-httpcode', a.get('failed-validation-httpcode')),
    requireExpirationTime: bool(a.get('require-expiration-time')),
    clockSkewSeconds: integer(el, ctx, 'clock-skew', a.get('clock-skew')),
  };
  const texts = (child: XmlElement, item: string) => children(child, ctx, [item]).map((c) => c.text);
  for (const child of children(el, ctx, ['openid-config', 'issuer-signing-keys', 'audiences', 'issuers', 'required-claims'])) {
    if (child.name === 'openid-config') {
      attributes(child, ctx, ['url']);
      config.openidConfig = [...((config.openidConfig as string[]) ?? []), child.attributes.get('url')];
    } else if (child.name === 'audiences') config.audiences = texts(child, 'audience');
    else if (child.name === 'issuers') config.issuers = texts(child, 'issuer');
    else if (child.name === 'issuer-signing-keys') {
      const keys: Record<string, unknown>[] = [];
      for (const key of children(child, ctx, ['key'])) {
        const ka = attributes(key, ctx, ['id', 'n', 'e'], { 'certificate-id': '' });
        if (ka.has('certificate-id')) ctx.problem(key, 'certificate-id: give the certificate\'s public key as a JWK');
        else if (ka.has('n') && ka.has('e')) keys.push(defined({ kid: ka.get('id'), jwk: { kty: 'RSA', n: ka.get('n'), e: ka.get('e') } }));
        else if (key.text !== '') keys.push(defined({ kid: ka.get('id'), secret: key.text }));
      }
      config.keys = keys;
    } else {
      const claims: Record<string, unknown>[] = [];
      for (const claim of children(child, ctx, ['claim'])) {
        const ca = attributes(claim, ctx, ['name', 'match'], { separator: '' });
        if (ca.get('match') === 'all') ctx.problem(claim, 'match="all": Gatehouse accepts a claim holding any one of the values');
        if (ca.has('separator')) ctx.problem(claim, `separator="${ca.get('separator')}": Gatehouse splits string claims on spaces`);
        const values = texts(claim, 'value');
        claims.push(defined({ name: ca.get('name'), values: values.length > 0 ? values : undefined }));
      }
      config.requiredClaims = claims;
    }
  }
  return policy('validate-jwt', config);
};

const setVariable: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['name', 'value']);
  const v = value(el, a.get('value') ?? '', ctx, true, 'value');
  return v === null ? null : { 'set-variable': { name: a.get('name'), value: v } };
};

const includeFragment: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['fragment-id']);
  return { 'include-fragment': a.get('fragment-id') };
};

const choose: Translator = (el, ctx) => {
  attributes(el, ctx, []);
  const branches: Entry[] = [];
  let otherwise: Entry[] | undefined;
  for (const child of children(el, ctx, ['when', 'otherwise'])) {
    if (child.name === 'otherwise') {
      attributes(child, ctx, []);
      otherwise = ctx.chain(child.children);
      continue;
    }
    const ca = attributes(child, ctx, ['condition']);
    const condition = translateExpression(ca.get('condition') ?? '');
    if ('problem' in condition) {
      ctx.problem(child, `condition: ${condition.problem}; the branch is left out`);
      continue;
    }
    branches.push({ when: condition.cel, policies: ctx.chain(child.children) });
  }
  if (branches.length === 0) {
    if (otherwise === undefined) return null;
    // Only `otherwise` is left: its policies always run, as a branch that always holds.
    return { choose: [{ when: 'true', policies: otherwise }] };
  }
  return otherwise === undefined ? { choose: branches } : { choose: branches, otherwise };
};

const cacheLookup: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['downstream-caching-type', 'must-revalidate', 'allow-private-response-caching'], {
    'vary-by-developer': '',
    'vary-by-developer-groups': '',
    'caching-type': '',
  });
  for (const name of ['vary-by-developer', 'vary-by-developer-groups']) {
    if (bool(a.get(name))) ctx.problem(el, `${name}="true": Gatehouse has no developers; vary by the header or query parameter that carries the caller's key`);
  }
  const privateCaching = a.get('allow-private-response-caching');
  if (privateCaching !== undefined && isExpression(privateCaching)) ctx.problem(el, 'allow-private-response-caching: an expression is not translated (true or false)');
  const headers: string[] = [];
  const params: string[] = [];
  for (const child of children(el, ctx, ['vary-by-header', 'vary-by-query-parameter'])) (child.name === 'vary-by-header' ? headers : params).push(child.text);
  return {
    'cache-lookup': defined({
      varyByHeaders: headers.length > 0 ? headers : undefined,
      varyByQueryParameters: params.length > 0 ? params : undefined,
      allowPrivateResponseCaching: privateCaching !== undefined && !isExpression(privateCaching) ? bool(privateCaching) : undefined,
      downstreamCachingType: a.get('downstream-caching-type'),
      mustRevalidate: bool(a.get('must-revalidate')),
    }),
  };
};

const cacheStore: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['duration'], { 'cache-response': '' });
  if (a.has('cache-response')) ctx.problem(el, `cache-response="${a.get('cache-response')}": give the statuses to store (statuses: [...])`);
  return { 'cache-store': { duration: integer(el, ctx, 'duration', a.get('duration')) } };
};

const cacheLookupValue: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['key', 'variable-name', 'default-value'], { 'caching-type': '' });
  const key = value(el, a.get('key') ?? '', ctx, true, 'key');
  const fallback = a.has('default-value') ? value(el, a.get('default-value')!, ctx, true, 'default-value') : undefined;
  if (key === null || fallback === null) return null;
  return { 'cache-lookup-value': defined({ key, variableName: a.get('variable-name'), defaultValue: fallback }) };
};

const cacheStoreValue: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['key', 'value', 'duration'], { 'caching-type': '' });
  const key = value(el, a.get('key') ?? '', ctx, true, 'key');
  const v = value(el, a.get('value') ?? '', ctx, true, 'value');
  if (key === null || v === null) return null;
  return { 'cache-store-value': { key, value: v, duration: integer(el, ctx, 'duration', a.get('duration')) } };
};

const cacheRemoveValue: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['key'], { 'caching-type': '' });
  const key = value(el, a.get('key') ?? '', ctx, true, 'key');
  return key === null ? null : { 'cache-remove-value': { key } };
};

/** What APIM's validation policies do with what they find; Gatehouse's three validation policies take the same. */
type Action = 'prevent' | 'detect' | 'ignore';
const ACTIONS: readonly Action[] = ['prevent', 'detect', 'ignore'];
/** The order of strictness, to pick the safer of two actions where Gatehouse has one. */
const STRICTNESS: Record<Action, number> = { ignore: 0, detect: 1, prevent: 2 };

/** An action attribute: a fixed prevent, detect or ignore; an expression or another value is reported (undefined). */
function action(el: XmlElement, ctx: TranslateContext, name: string): Action | undefined {
  const text = el.attributes.get(name);
  if (text === undefined) return undefined;
  const v = text.trim().toLowerCase();
  if ((ACTIONS as readonly string[]).includes(v)) return v as Action;
  ctx.problem(el, isExpression(text) ? `${name}: Gatehouse takes prevent, detect or ignore here, not an expression (${text.trim()})` : `${name}="${text}" is not prevent, detect or ignore`);
  return undefined;
}

/** errors-variable-name as a Gatehouse variable name; one it cannot take is reported (the policy's default is used). */
function errorsVariable(el: XmlElement, ctx: TranslateContext): string | undefined {
  const name = el.attributes.get('errors-variable-name');
  if (name === undefined) return undefined;
  if (/^[A-Za-z0-9._-]{1,128}$/.test(name)) return name;
  ctx.problem(el, `errors-variable-name="${name}": Gatehouse's variable names are letters, digits, '.', '_', '-' (at most 128); validation-errors used`);
  return undefined;
}

/**
 * APIM's per-name overrides (`<header>`, `<parameter>`, `<status-code>` with an action). Gatehouse's validation
 * policies have no per-name action, but what the overrides mean is mostly expressible: `ignore` for a name is a
 * declaration without constraints (it passes whether or not APIM's definition declares it), and an action that is the
 * one Gatehouse applies anyway to declared and undeclared names alike changes nothing. Any other action is reported.
 * Returns the names declared.
 */
function overrides(items: readonly XmlElement[], ctx: TranslateContext, o: { policy: string; key: string; what: string; applied: { specified: Action; unspecified: Action }; valid: (name: string) => string | null }): string[] {
  const declared: string[] = [];
  for (const item of items) {
    attributes(item, ctx, [o.key, 'action']);
    children(item, ctx, []);
    const name = item.attributes.get(o.key);
    const act = action(item, ctx, 'action');
    if (name === undefined || isExpression(name)) {
      ctx.problem(item, name === undefined ? `<${item.name}> without ${o.key}` : `${o.key}: Gatehouse takes a fixed ${o.what} here, not an expression (${name})`);
      continue;
    }
    const invalid = o.valid(name);
    if (invalid !== null) ctx.problem(item, `${o.key}="${name}": ${invalid} (left out)`);
    else if (act === 'ignore') {
      if (!declared.includes(name)) declared.push(name);
    } else if (act !== undefined && (act !== o.applied.specified || act !== o.applied.unspecified)) {
      const applies = o.applied.specified === o.applied.unspecified ? o.applied.specified : `${o.applied.specified} to declared ones and ${o.applied.unspecified} to the others`;
      ctx.problem(item, `action="${act}" for ${o.what} ${name}: Gatehouse's ${o.policy} has no action per ${o.what} (here it applies ${applies}); left out`);
    }
  }
  return declared;
}

/** Where the declarations of the three validation policies come from in APIM, and where they go here. */
function declarationsNote(el: XmlElement, ctx: TranslateContext, declared: string, key: string, policyName: string): void {
  ctx.note(el, `APIM checks against the ${declared} of the API definition, which a policy document does not carry: add those the operation declares to ${key} (policies/${policyName}/README.md)`);
}

/**
 * Whether the element is in the one phase the Gatehouse policy handles (a gateway refuses the policy anywhere else);
 * APIM also takes validate-headers and validate-status-code in on-error, which is reported.
 */
function inPhase(el: XmlElement, ctx: TranslateContext, policyName: string, phase: Section): boolean {
  if (ctx.section === phase) return true;
  ctx.problem(el, `<${el.name}> in <${ctx.section}>: Gatehouse's ${policyName} runs in ${phase} only (left out)`);
  return false;
}

/** At most `max` declarations (the policy's schema bound); more are reported. */
function bounded(el: XmlElement, ctx: TranslateContext, names: string[], max: number, what: string): string[] {
  if (names.length <= max) return names;
  ctx.problem(el, `${names.length} ${what}: Gatehouse declares at most ${max} (the first ${max} are kept)`);
  return names.slice(0, max);
}

/** Null for a name HTTP allows (a token of at most 256 characters, Gatehouse's bound), else what is wrong. */
const headerName = (name: string) => (/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/.test(name) ? null : 'not a header name');

/**
 * validate-headers: the response headers the API definition declares become `headers` (not in the document: noted);
 * `<header name action="ignore">` declares the header without constraints.
 */
const validateHeaders: Translator = (el, ctx) => {
  if (!inPhase(el, ctx, 'validate-headers', 'outbound')) return null;
  attributes(el, ctx, ['specified-header-action', 'unspecified-header-action', 'errors-variable-name']);
  const specified = action(el, ctx, 'specified-header-action');
  const unspecified = action(el, ctx, 'unspecified-header-action');
  const applied = { specified: specified ?? 'prevent', unspecified: unspecified ?? 'ignore' };
  const names = overrides(children(el, ctx, ['header']), ctx, { policy: 'validate-headers', key: 'name', what: 'header', applied, valid: headerName });
  declarationsNote(el, ctx, 'response headers', 'headers', 'validate-headers');
  const headers = bounded(el, ctx, names, 100, 'headers').map((name) => ({ name }));
  return policy('validate-headers', {
    headers: headers.length > 0 ? headers : undefined,
    specifiedHeaderAction: specified,
    unspecifiedHeaderAction: unspecified,
    errorsVariable: errorsVariable(el, ctx),
  });
};

/**
 * validate-parameters. APIM sets the actions per location (`<headers>`, `<query>`, `<path>` override the element's);
 * Gatehouse has one action for declared query parameters and headers (where the document's differ, the stricter is
 * used and the other reported), checks undeclared query parameters only (an undeclared-header action other than
 * ignore is reported), and routes path parameters by the operation's URL template (noted).
 */
const validateParameters: Translator = (el, ctx) => {
  if (!inPhase(el, ctx, 'validate-parameters', 'inbound')) return null;
  attributes(el, ctx, ['specified-parameter-action', 'unspecified-parameter-action', 'errors-variable-name']);
  const top = { specified: action(el, ctx, 'specified-parameter-action'), unspecified: action(el, ctx, 'unspecified-parameter-action') };
  const locations = new Map<string, XmlElement>();
  for (const child of children(el, ctx, ['headers', 'query', 'path'])) {
    if (locations.has(child.name)) ctx.problem(child, `a second <${child.name}> inside <validate-parameters> (the first is used)`);
    else locations.set(child.name, child);
  }
  /** A location's action: its own attribute, else the element's; with the element that set it, to report it. */
  const effective = (location: 'headers' | 'query', name: 'specified' | 'unspecified'): { act: Action; from: XmlElement } | undefined => {
    const child = locations.get(location);
    const own = child?.attributes.has(`${name}-parameter-action`) ? action(child, ctx, `${name}-parameter-action`) : undefined;
    if (own !== undefined) return { act: own, from: child! };
    return top[name] === undefined ? undefined : { act: top[name]!, from: el };
  };
  for (const location of ['headers', 'query'] as const) {
    const child = locations.get(location);
    if (child) attributes(child, ctx, ['specified-parameter-action', 'unspecified-parameter-action']);
  }
  const query = { specified: effective('query', 'specified'), unspecified: effective('query', 'unspecified') };
  const headers = { specified: effective('headers', 'specified'), unspecified: effective('headers', 'unspecified') };
  let specified = query.specified?.act;
  const other = headers.specified?.act;
  if (specified !== undefined && other !== undefined && specified !== other) {
    const [used, lost] = STRICTNESS[specified] >= STRICTNESS[other] ? [query.specified!, headers.specified!] : [headers.specified!, query.specified!];
    const place = (from: XmlElement) => (from === el ? `for ${used === query.specified ? 'headers' : 'query parameters'}` : `on <${from.name}>`);
    ctx.problem(lost.from, `specified-parameter-action="${lost.act}" ${place(lost.from)}: Gatehouse's validate-parameters has one action for declared query parameters and headers (${used.act}, the stricter, is used for both)`);
    specified = used.act;
  } else specified ??= other;
  if (headers.unspecified !== undefined && headers.unspecified.act !== 'ignore') {
    ctx.problem(headers.unspecified.from, `unspecified-parameter-action="${headers.unspecified.act}" ${headers.unspecified.from === el ? 'applies to headers too' : 'on <headers>'}: Gatehouse's validate-parameters checks undeclared query parameters only (a header the operation does not declare passes)`);
  }
  const unspecified = query.unspecified?.act;
  const applied = { specified: specified ?? 'prevent', unspecified: unspecified ?? 'ignore' };
  const declared = (location: 'headers' | 'query', what: string, valid: (n: string) => string | null) => {
    const child = locations.get(location);
    if (!child) return undefined;
    // Undeclared headers always pass here: for a header, "the others" are ignored.
    const forLocation = location === 'headers' ? { specified: applied.specified, unspecified: 'ignore' as Action } : applied;
    const names = overrides(children(child, ctx, ['parameter']), ctx, { policy: 'validate-parameters', key: 'name', what, applied: forLocation, valid });
    const kept = bounded(child, ctx, names, 100, `${what}s`).map((name) => ({ name }));
    return kept.length > 0 ? kept : undefined;
  };
  const length = (n: string) => (n.length <= 256 ? null : 'longer than 256 characters');
  const config = {
    query: declared('query', 'query parameter', length),
    headers: declared('headers', 'header', headerName),
    specifiedParameterAction: specified,
    unspecifiedParameterAction: unspecified,
    errorsVariable: errorsVariable(el, ctx),
  };
  const path = locations.get('path');
  if (path) {
    attributes(path, ctx, ['specified-parameter-action']);
    for (const p of children(path, ctx, ['parameter'])) attributes(p, ctx, ['name', 'action']);
    ctx.note(path, "<path>: Gatehouse routes path parameters by the operation's URL template (a path that does not match is not routed) and checks their values against no schema");
  }
  declarationsNote(el, ctx, 'query parameters and headers', 'query and headers', 'validate-parameters');
  return policy('validate-parameters', config);
};

/**
 * validate-status-code: the statuses the API definition declares become `statusCodes` (not in the document: noted);
 * `<status-code code action="ignore">` declares the status. Gatehouse needs at least one declared status, so a
 * document that declares none gives no entry (reported, or noted when the policy was to ignore every status anyway).
 */
const validateStatusCode: Translator = (el, ctx) => {
  if (!inPhase(el, ctx, 'validate-status-code', 'outbound')) return null;
  attributes(el, ctx, ['unspecified-status-code-action', 'errors-variable-name']);
  const unspecified = action(el, ctx, 'unspecified-status-code-action');
  const applied = unspecified ?? 'prevent';
  // An override for a status the API definition declares has no effect in APIM: only the undeclared case counts.
  const codes = overrides(children(el, ctx, ['status-code']), ctx, {
    policy: 'validate-status-code',
    key: 'code',
    what: 'status',
    applied: { specified: applied, unspecified: applied },
    valid: (c) => (/^[1-5][0-9]{2}$/.test(c) ? null : 'not a status from 100 to 599'),
  });
  const statusCodes = bounded(el, ctx, codes, 100, 'statuses');
  const variable = errorsVariable(el, ctx);
  if (statusCodes.length === 0) {
    if (applied === 'ignore') ctx.note(el, 'unspecified-status-code-action="ignore" and no status declared here: the policy checks nothing (no entry)');
    else ctx.problem(el, "Gatehouse's validate-status-code needs the statuses the operation declares, which APIM reads from the API definition and this document does not carry (left out): write the entry with statusCodes (policies/validate-status-code/README.md), or declare them here with <status-code code=\"200\" action=\"ignore\" />");
    return null;
  }
  declarationsNote(el, ctx, 'statuses', 'statusCodes', 'validate-status-code');
  return policy('validate-status-code', { statusCodes, unspecifiedStatusCodeAction: unspecified, errorsVariable: variable });
};

/** A whole number of seconds at most `max` (Gatehouse's bound); a larger one is reported and `max` used. */
function seconds(element: XmlElement, ctx: TranslateContext, name: string, text: string | undefined, max: number): number | undefined {
  const n = integer(element, ctx, name, text);
  if (n === undefined || n <= max) return n;
  ctx.problem(element, `${name}="${text}": Gatehouse allows at most ${max} seconds here (${max} used)`);
  return max;
}

/**
 * The body of a set-body (standalone, or inside send-request): text, an expression as CEL, or a Liquid template kept
 * as written. `liquid` says whether the place takes templates. Undefined when it cannot be translated (reported).
 */
function bodyOf(el: XmlElement, ctx: TranslateContext, liquid: boolean): { value: string | { expr: string }; template?: 'liquid' } | undefined {
  const a = attributes(el, ctx, ['template'], { 'xsi-nil': '', 'parse-date': '' });
  for (const name of ['xsi-nil', 'parse-date']) if (a.has(name)) ctx.problem(el, `${name}="${a.get(name)}" of <set-body> is not translated`);
  children(el, ctx, []);
  const template = a.get('template');
  if (template !== undefined) {
    if (template.toLowerCase() !== 'liquid') {
      ctx.problem(el, `template="${template}": Gatehouse's templates are Liquid only`);
      return undefined;
    }
    if (!liquid) {
      ctx.problem(el, 'template="liquid": this body takes text or an expression, not a template');
      return undefined;
    }
    return { value: el.text, template: 'liquid' };
  }
  const v = value(el, el.text, ctx, true, 'set-body');
  return v === null ? undefined : { value: v };
}

const setBody: Translator = (el, ctx) => {
  const body = bodyOf(el, ctx, true);
  return body === undefined ? null : { 'set-body': defined({ value: body.value, template: body.template }) };
};

/**
 * send-request and send-one-way-request. Gatehouse's call takes its headers as a map set on a new request (or on a
 * copy of the current one): one value per header, and with mode=copy no way to keep (skip), add to (append) or remove
 * (delete) a copied header; those are reported.
 */
function outboundCall(oneWay: boolean): Translator {
  return (el, ctx) => {
    const known = oneWay ? ['mode', 'timeout'] : ['mode', 'timeout', 'response-variable-name', 'ignore-error'];
    const a = attributes(el, ctx, known);
    const mode = (a.get('mode') ?? 'new').toLowerCase();
    if (mode !== 'new' && mode !== 'copy') {
      ctx.problem(el, `mode="${a.get('mode')}": Gatehouse's mode is new or copy, not an expression`);
      return null;
    }
    const config: Record<string, unknown> = { mode: a.has('mode') ? mode : undefined };
    const responseVariable = a.get('response-variable-name');
    if (!oneWay) {
      if (responseVariable === undefined || isExpression(responseVariable)) {
        ctx.problem(el, responseVariable === undefined ? 'response-variable-name is required' : `response-variable-name="${responseVariable}": Gatehouse takes a name, not an expression`);
        return null;
      }
    }
    const headers: Record<string, unknown> = {};
    let complete = true;
    for (const child of children(el, ctx, ['set-url', 'set-method', 'set-header', 'set-body'])) {
      if (child.name === 'set-url' || child.name === 'set-method') {
        attributes(child, ctx, []);
        const v = value(child, child.text, ctx, true, child.name);
        if (v === null) complete = false;
        else config[child.name === 'set-url' ? 'url' : 'method'] = v;
      } else if (child.name === 'set-header') {
        const ha = attributes(child, ctx, ['name', 'exists-action']);
        const action = (ha.get('exists-action') ?? 'override').toLowerCase();
        const values = children(child, ctx, ['value']);
        if (action === 'delete' || (mode === 'copy' && action !== 'override')) {
          if (mode === 'copy') ctx.problem(child, `exists-action="${action}" on a copied request: Gatehouse's call sets its headers (override) and cannot ${action} one`);
          else if (action === 'delete') ctx.problem(child, 'exists-action="delete" on a new request: it has no such header to delete (left out)');
          continue;
        }
        const name = ha.get('name')?.toLowerCase();
        if (name === undefined || name in headers) {
          ctx.problem(child, name === undefined ? '<set-header> without a name' : `a second <set-header> for ${name}: Gatehouse's call sends one value per header (the first is kept)`);
          continue;
        }
        if (values.length > 1) ctx.problem(child, `${values.length} <value> elements: Gatehouse's call sends one value per header (the first is kept)`);
        const v = values[0] ? value(values[0], values[0].text, ctx, true, 'value') : '';
        if (v === null) complete = false;
        else headers[name] = v;
      } else {
        const body = bodyOf(child, ctx, false);
        if (body === undefined) complete = false;
        else config.body = body.value;
      }
    }
    if (!complete) return null;
    if (config.url === undefined && mode === 'new') {
      ctx.problem(el, '<set-url> is required with mode="new"');
      return null;
    }
    if (config.url === undefined) {
      ctx.problem(el, "mode=\"copy\" without <set-url>: Gatehouse's call needs its URL (APIM sends the copy to the request's URL)");
      return null;
    }
    config.headers = Object.keys(headers).length > 0 ? headers : undefined;
    config.timeout = seconds(el, ctx, 'timeout', a.get('timeout'), 30);
    if (!a.has('timeout')) ctx.note(el, 'no timeout: APIM waits 60 seconds by default, Gatehouse 20 (at most 30)');
    if (!oneWay) {
      config.responseVariable = responseVariable;
      config.ignoreError = bool(a.get('ignore-error'));
    }
    const name = oneWay ? 'send-one-way-request' : 'send-request';
    const ordered = ['url', 'mode', 'method', 'headers', 'body', 'timeout', 'responseVariable', 'ignoreError'];
    return { [name]: defined(Object.fromEntries(ordered.map((k) => [k, config[k]]))) };
  };
}

const retry: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['condition', 'count', 'interval', 'max-interval', 'delta', 'first-fast-retry']);
  const condition = value(el, a.get('condition') ?? '', ctx, true, 'condition');
  if (condition === null) return null;
  if (typeof condition === 'string') {
    ctx.problem(el, `condition="${condition}": a retry condition is an expression`);
    return null;
  }
  const count = integer(el, ctx, 'count', a.get('count'));
  if (count !== undefined && count > 50) ctx.problem(el, `count="${count}": Gatehouse retries at most 50 times (50 used)`);
  const firstFast = a.get('first-fast-retry');
  if (firstFast !== undefined && isExpression(firstFast)) ctx.problem(el, `first-fast-retry: Gatehouse takes true or false here, not an expression (${firstFast})`);
  for (const child of el.children) {
    if (child.name === 'forward-request') ctx.problem(child, "<forward-request> inside <retry>: Gatehouse forwards outside the chain; retry the backend with the API's backend.retry (docs/configuration.md)");
  }
  const policies = ctx.chain(el.children.filter((c) => c.name !== 'forward-request'));
  if (policies.length === 0) {
    ctx.problem(el, '<retry> has no policy Gatehouse runs inside it (left out)');
    return null;
  }
  return {
    retry: defined({
      condition: condition.expr,
      count: count === undefined ? undefined : Math.min(count, 50),
      interval: seconds(el, ctx, 'interval', a.get('interval'), 30),
      delta: seconds(el, ctx, 'delta', a.get('delta'), 30),
      maxInterval: seconds(el, ctx, 'max-interval', a.get('max-interval'), 30),
      firstFastRetry: firstFast !== undefined && !isExpression(firstFast) ? bool(firstFast) : undefined,
      policies,
    }),
  };
};

/** wait runs send-request and send-one-way-request side by side; APIM's other children (cache-lookup-value, choose) cannot be. */
const wait: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['for']);
  const mode = (a.get('for') ?? 'all').toLowerCase();
  if (mode !== 'all' && mode !== 'any') {
    ctx.problem(el, `for="${a.get('for')}": Gatehouse's wait is for all or any`);
    return null;
  }
  const calls = ['send-request', 'send-one-way-request'];
  for (const child of el.children) {
    if (!calls.includes(child.name)) ctx.problem(child, `<${child.name}> inside <wait>: Gatehouse runs only send-request and send-one-way-request side by side (left out)`);
  }
  const policies = ctx.chain(el.children.filter((c) => calls.includes(c.name)));
  if (policies.length === 0) return null;
  return { wait: defined({ for: a.has('for') ? mode : undefined, policies }) };
};

const trace: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['source', 'severity']);
  const severity = a.get('severity')?.toLowerCase();
  if (severity !== undefined && !['verbose', 'information', 'error'].includes(severity)) ctx.problem(el, `severity="${a.get('severity')}" is not one of verbose, information, error (verbose used)`);
  let message: string | { expr: string } | null = null;
  const metadata: Record<string, unknown> = {};
  for (const child of children(el, ctx, ['message', 'metadata'])) {
    if (child.name === 'message') {
      attributes(child, ctx, []);
      message = value(child, child.text, ctx, true, 'message');
      if (message === null) return null;
    } else {
      const ma = attributes(child, ctx, ['name', 'value']);
      const name = ma.get('name') ?? '';
      const key = name.trim().replace(/\s+/g, '-');
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(key)) {
        ctx.problem(child, `metadata name="${name}": Gatehouse's names are letters, digits, '.', '_', '-' (at most 64) (left out)`);
        continue;
      }
      if (key !== name) ctx.note(child, `metadata name="${name}" is recorded as ${key} (Gatehouse's names have no spaces)`);
      if (Object.keys(metadata).length === 16) {
        ctx.problem(child, 'more than 16 <metadata> elements: Gatehouse records 16 (left out)');
        continue;
      }
      const v = value(child, ma.get('value') ?? '', ctx, true, 'metadata value');
      if (v !== null) metadata[key] = v;
    }
  }
  if (message === null) {
    ctx.problem(el, '<trace> has no <message>');
    return null;
  }
  return {
    trace: defined({
      source: a.get('source'),
      severity: severity !== undefined && ['verbose', 'information', 'error'].includes(severity) ? severity : undefined,
      message,
      metadata: Object.keys(metadata).length > 0 ? metadata : undefined,
    }),
  };
};

/** Named values (`{{name}}`) stay as written: the gateway substitutes them, and masks secret ones in logs. */
const authenticationBasic: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['username', 'password']);
  const username = value(el, a.get('username') ?? '', ctx, false, 'username');
  const password = value(el, a.get('password') ?? '', ctx, false, 'password');
  if (username === null || password === null) return null;
  return policy('authentication-basic', { username, password });
};

/**
 * quota counts per caller (the subscription's key id, as APIM counts per subscription). Its <api> and <operation>
 * children (quotas per API and operation of a product) are not translated: one quota per binding here.
 */
const quota: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['calls', 'bandwidth', 'renewal-period']);
  for (const child of el.children) {
    ctx.problem(child, `<${child.name}> inside <quota> is not translated: give that ${child.name} its own quota entry in its scope`);
  }
  const period = integer(el, ctx, 'renewal-period', a.get('renewal-period'));
  if (period === 0) {
    ctx.problem(el, 'renewal-period="0" (a quota for ever): Gatehouse\'s periods are at most a year (31536000 seconds)');
    return null;
  }
  return policy('quota', {
    calls: integer(el, ctx, 'calls', a.get('calls')),
    bandwidth: integer(el, ctx, 'bandwidth', a.get('bandwidth')),
    renewalPeriod: period,
  });
};

const jsonp: Translator = (el, ctx) => {
  const a = attributes(el, ctx, ['callback-parameter-name']);
  children(el, ctx, []);
  const name = value(el, a.get('callback-parameter-name') ?? '', ctx, false, 'callback-parameter-name');
  return name === null ? null : policy('jsonp', { callbackParameterName: name });
};

/**
 * forward-request is the gateway's own behaviour: it forwards between the backend and outbound phases, so the element
 * becomes no entry. Its settings belong to the API's backend (timeoutMs, retry), not to the chain: they are listed.
 */
const forwardRequest: Translator = (el, ctx) => {
  for (const [name, v] of el.attributes) ctx.problem(el, `attribute ${name}="${v}" of <forward-request> is not translated: the forwarding's settings are the API's backend (timeoutMs, retry; docs/configuration.md)`);
  children(el, ctx, []);
  if (ctx.section !== 'backend') ctx.problem(el, `<forward-request> in <${ctx.section}>: Gatehouse forwards once, between the backend and outbound phases`);
  else ctx.note(el, '<forward-request>: Gatehouse forwards between the backend and outbound phases itself (no entry)');
  return null;
};

/** APIM policy elements Gatehouse has, by element name. */
export const TRANSLATORS: Record<string, Translator> = {
  'set-header': setHeader,
  'set-query-parameter': setQueryParameter,
  'set-status': setStatus,
  'set-method': setMethod,
  'set-backend-service': setBackendService,
  'rewrite-uri': rewriteUri,
  'return-response': returnResponse,
  'mock-response': mockResponse,
  'check-header': checkHeader,
  'ip-filter': ipFilter,
  cors,
  'rate-limit': rateLimit,
  'rate-limit-by-key': rateLimitByKey,
  'quota-by-key': quotaByKey,
  'limit-concurrency': limitConcurrency,
  'find-and-replace': findAndReplace,
  'json-to-xml': jsonToXml,
  'xml-to-json': xmlToJson,
  'emit-metric': emitMetric,
  'validate-jwt': validateJwt,
  'set-variable': setVariable,
  'include-fragment': includeFragment,
  choose,
  'cache-lookup': cacheLookup,
  'cache-store': cacheStore,
  'cache-lookup-value': cacheLookupValue,
  'cache-store-value': cacheStoreValue,
  'cache-remove-value': cacheRemoveValue,
  'validate-status-code': validateStatusCode,
  'validate-headers': validateHeaders,
  'validate-parameters': validateParameters,
  'send-request': outboundCall(false),
  'send-one-way-request': outboundCall(true),
  retry,
  wait,
  'set-body': setBody,
  trace,
  'authentication-basic': authenticationBasic,
  quota,
  jsonp,
  'forward-request': forwardRequest,
};
