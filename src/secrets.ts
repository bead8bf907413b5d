/**
 * The one place credentials are masked before text leaves the process: every
 * log line (the logger runs each finished line through `maskSecrets`), the
 * lines written to stderr at start and by the tools, `--print-config`, and the
 * database location the listening line names.
 *
 * Masked wherever they stand in a text (a whole value, or a URL inside an
 * error message, a stack or a JSON log line):
 *
 *   scheme://user:PASSWORD@host   the password (anything up to the last `@`
 *                                 before a space or quote: a password with an
 *                                 unescaped `/` or `:` is hidden whole)
 *   ?password=VALUE, &token=VALUE the value of a query parameter named like a
 *                                 secret (password, passwd, pwd, sslpassword,
 *                                 token, secret)
 *
 *   a registered value            a secret read at start (the `--bilibili-cookie`
 *                                 line and its values), wherever it stands
 *
 * A user name, a host and everything else stay as they are, so a line still
 * says which database or URL it is about.
 */

/** The mask that stands for a secret in `--print-config`, in error lines and in logs. */
export const MASK = '****';

/** `scheme://user:` then the password, up to the `@` that ends the userinfo. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:"'<>]*:)[^\s"'<>]*?@(?=[^\s"'<>@]*(?:[\s"'<>]|$))/gi;
/** Query parameters whose value is a secret. */
const SECRET_PARAMS = /([?&](?:password|passwd|pwd|sslpassword|token|secret)=)[^&#\s"'<>]*/gi;

/** Values read at start that must never leave the process, longest first. */
const registered: string[] = [];
/** Shorter values would mask ordinary words. */
const MIN_REGISTERED = 8;

/**
 * Masks `value` wherever it appears in any text from now on (values shorter
 * than 8 characters are not registered: they would mask ordinary words).
 */
export function registerSecret(value: string): void {
  if (value.length < MIN_REGISTERED) return;
  // As it stands, and as a JSON line writes it (a `"` or `\` escaped).
  for (const form of new Set([value, JSON.stringify(value).slice(1, -1)])) if (!registered.includes(form)) registered.push(form);
  registered.sort((a, b) => b.length - a.length);
}

/** `text` with every credential in it replaced by the mask. */
export function maskSecrets(text: string): string {
  for (const value of registered) if (text.includes(value)) text = text.replaceAll(value, MASK);
  if (!text.includes('://') && !text.includes('=')) return text;
  return text.replace(USERINFO, `$1${MASK}@`).replace(SECRET_PARAMS, `$1${MASK}`);
}
