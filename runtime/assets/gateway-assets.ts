// What the gateway takes from where it was installed rather than from its configuration: the document it serves
// without one, its built-in policies, how `source:` policies are built, its version, and the code of its worker threads. The repository (or its npm
// install) has them as files (repository.ts); the single-file bundle carries them inside (embedded.ts). Everything
// else runs the same code.

import type { PolicySources } from '../config/policy-sources.ts';

export interface DefaultDocument {
  /** Names the document in logs and problems: the file's path, or what holds it. */
  source: string;
  /** `module:` and `source:` paths in it are relative to this folder. */
  baseDir: string;
  read(): Promise<string>;
}

export interface GatewayAssets {
  /** The document served when no configuration file or control plane is given. */
  defaultDocument: DefaultDocument;
  policies: PolicySources;
  /** The gateway's version (package.json's), as heartbeats report it. */
  version: string;
  /**
   * The module the Application Insights exporter thread runs (runtime/telemetry/appinsights-exporter.ts): a file
   * beside the gateway's code, or a data: URL inside the bundle. Loaded only when Application Insights is configured.
   */
  appInsightsExporter: URL;
}
