import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the console's static files lie. A module of its own so that routes/public.ts reads it
 * without importing app.ts, which imports the routes (an ES-module cycle that worked only
 * because the value was read late).
 */
export const consoleDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'console');
