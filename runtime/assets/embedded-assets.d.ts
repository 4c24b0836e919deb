// The module scripts/lib/bundle.ts provides to the single-file bundle (it exists nowhere as a file).

declare module 'gatehouse:embedded-assets' {
  export const assets: {
    /** package.json's version. */
    version: string;
    /** The text of runtime/config/default.yaml, and that name. */
    defaultDocument: string;
    defaultDocumentName: string;
    /** Every built-in policy, compiled with the SDK when the bundle was made. */
    policies: { name: string; needs: string[]; wasmBase64: string }[];
    /** runtime/telemetry/appinsights-exporter.ts bundled into one ES module, as a data: URL a Worker can run. */
    appInsightsExporter: string;
  };
}
