#!/usr/bin/env node
// Launcher of the gatehouse command (operators' CLI for the control plane, runtime/operator-cli/): the root package's bin.
// The launcher helper is the SDK's (sdk/bin/launch.js), one for both commands: the root package holds the SDK as a
// workspace, and the SDK's own bin stays within its folder.
import { launch } from '../sdk/bin/launch.js';

await launch('gatehouse', import.meta.url, 'dist/runtime/operator-cli/gatehouse.js', ['runtime', 'abi', 'sdk/build']);
