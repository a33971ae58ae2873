// Checks an HTML email (on standard input) against the caniemail support database for the
// email clients named as arguments (globs such as 'gmail.*'), and prints the result as JSON:
// {"success", "errors" (unsupported features), "warnings" (partly supported), "notes"}.
import { readFileSync } from 'node:fs';
import { doIUseEmail } from '@jsx-email/doiuse-email';

const html = readFileSync(0, 'utf8');
const result = doIUseEmail(html, { emailClients: process.argv.slice(2) });
process.stdout.write(JSON.stringify(result));
