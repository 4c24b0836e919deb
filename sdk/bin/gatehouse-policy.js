#!/usr/bin/env node
// Launcher of the gatehouse-policy command (the SDK's CLI, sdk/cli/).
import { launch } from './launch.js';

await launch('gatehouse-policy', import.meta.url, 'dist/sdk/cli/gatehouse-policy.js', ['abi', 'sdk/build', 'sdk/cli', 'runtime']);
