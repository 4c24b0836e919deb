#!/usr/bin/env node
// Launcher of the gatehouse command (operators' CLI for the control plane, runtime/operator-cli/).
import { launch } from './launch.js';

await launch('gatehouse', import.meta.url, 'dist/runtime/operator-cli/gatehouse.js', ['runtime', 'sdk/cli']);
