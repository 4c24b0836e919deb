#!/usr/bin/env node
// Launcher of the gatehouse command (operators' CLI for the control plane, runtime/cli/).
import { launch } from './launch.js';

await launch('gatehouse', import.meta.url, 'dist/runtime/cli/main.js', ['runtime', 'abi', 'sdk/build']);
