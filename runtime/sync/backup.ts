// The configuration backup (GATEHOUSE_BACKUP_DIR): every document applied from the control plane is written to disk,
// atomically (a temporary file, fsync, rename), and the one before it is kept. A gateway that restarts while the control
// plane is unreachable starts from the newest backup that checks out (its digest matches), else from the previous one.
//
// Secrets are encrypted at rest: the values of secret named values are taken out of the document and sealed with
// AES-256-GCM under the backup key (GATEHOUSE_BACKUP_KEY, else a key made once and kept beside the backup). The sealed
// blob is bound to the rest of the document (its additional data), so it cannot be moved into another backup.

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { NamedValue } from '../config/named-values.ts';
import { createOnce, removeStaleTemps, replaceAtomically, syncDir } from './durable-file.ts';
import type { Logger } from '../telemetry/logger.ts';

export interface BackupEntry {
  /** The configuration document, as the control plane sent it. */
  text: string;
  etag: string | null;
  revision: string | null;
  savedAt: string;
}

interface BackupFile extends BackupEntry {
  /** The document's secret named values, sealed (`sealSecrets`); `text` holds them emptied. */
  sealed?: string;
  /** sha256 of `text` (and `sealed`): a file cut short or altered does not pass for a configuration. */
  sha256: string;
}

const CURRENT = 'config.json';
const PREVIOUS = 'config.previous.json';
/** The key made when GATEHOUSE_BACKUP_KEY is not set. */
const KEY_FILE = 'backup.key';

const digest = (text: string, sealed?: string) =>
  createHash('sha256').update(sealed === undefined ? text : `${text}\n${sealed}`).digest('hex');

/**
 * Reads a backup key: 64 hex digits or the base64 of 32 bytes, given as such or in a file (GATEHOUSE_BACKUP_KEY may
 * be either). Throws an error saying which form is expected.
 */
/** 32 bytes written as 64 hex digits or 44 base64 characters; null for anything else. */
function decodeKey(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(t)) return Buffer.from(t, 'base64');
  return null;
}

/**
 * Reads GATEHOUSE_BACKUP_KEY: the key itself (64 hex digits or 44 base64 characters: `openssl rand -hex 32`), or a
 * file holding it. Throws an error saying which forms are expected.
 */
export function parseBackupKey(given: string, readFileText: (path: string) => string): Buffer {
  const inline = decodeKey(given);
  if (inline) return inline;
  let text: string;
  try {
    text = readFileText(given);
  } catch (err) {
    throw new Error(`neither a key (64 hex digits or 44 base64 characters) nor a file holding one: ${(err as Error).message}`);
  }
  const fromFile = decodeKey(text);
  if (!fromFile) throw new Error(`${given} does not hold a key: 32 bytes as 64 hex digits or 44 base64 characters expected`);
  return fromFile;
}

export interface ConfigBackupOptions {
  /** The key that seals secrets (GATEHOUSE_BACKUP_KEY); absent: one made and kept in `<dir>/backup.key`. */
  key?: Buffer;
  logger?: Logger;
}

export class ConfigBackup {
  private key: Promise<Buffer> | null;
  private swept = false;

  constructor(
    readonly dir: string,
    private readonly options: ConfigBackupOptions = {},
  ) {
    this.key = options.key ? Promise.resolve(options.key) : null;
  }

  /**
   * The backup key: the one given, else the one beside the backup, made on first use when `make` (to seal). Reading a
   * backup never makes one: a key made then could not open what an earlier key sealed.
   */
  private backupKey(make: boolean): Promise<Buffer> {
    this.key ??= this.keyBeside(make).catch((err: unknown) => {
      this.key = null; // tried again next time (a full disk, say, may have cleared)
      throw err;
    });
    return this.key;
  }

  private async keyBeside(make: boolean): Promise<Buffer> {
    const file = join(this.dir, KEY_FILE);
    const read = async () => {
      const key = decodeKey(await readFile(file, 'utf8'));
      if (!key) throw new Error(`${file} does not hold a backup key (damaged?): remove it, or set GATEHOUSE_BACKUP_KEY`);
      return key;
    };
    try {
      const key = await read();
      this.warnKeyBeside(file);
      return key;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!make) throw new Error(`its secrets are sealed, but there is no backup key: GATEHOUSE_BACKUP_KEY is not set and ${file} is gone`);
    this.warnKeyBeside(file);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const made = randomBytes(32);
    try {
      // Replicas sharing the folder do not overwrite each other's key; the one that loses reads the other's, whole.
      await createOnce(file, `${made.toString('hex')}\n`);
      await syncDir(this.dir);
      return made;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return read();
    }
  }

  private warnKeyBeside(file: string): void {
    this.options.logger?.warn(
      'secrets in the configuration backup are encrypted with a key kept beside it: set GATEHOUSE_BACKUP_KEY (from a secret store) to keep the key off the backup volume',
      { file },
    );
  }

  /**
   * Writes `entry` as the current backup, its secrets sealed, and keeps the current one as the previous. Replicas of
   * one gateway may share the folder, and each applies the same revisions: a revision already current is not written
   * again, and the previous file is written from what was read, not renamed from whatever is current at that moment,
   * so that two replicas saving one revision at once both keep the revision before it. A current backup that does not
   * check out is not kept: the previous one stays.
   */
  async save(entry: Omit<BackupEntry, 'savedAt'>): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    if (!this.swept) {
      this.swept = true;
      await removeStaleTemps(this.dir);
    }
    const currentPath = join(this.dir, CURRENT);
    const current = await this.read(currentPath).catch(() => null);
    if (current && current.text === entry.text && current.etag === entry.etag && current.revision === entry.revision) return;
    const { text, sealed } = await sealSecrets(entry.text, () => this.backupKey(true));
    const file: BackupFile = { ...entry, text, sealed, savedAt: new Date().toISOString(), sha256: digest(text, sealed) };
    if (current) await replaceAtomically(join(this.dir, PREVIOUS), current.raw);
    await replaceAtomically(currentPath, JSON.stringify(file));
    await syncDir(this.dir);
  }

  /**
   * The backups that check out, newest first, with what was wrong with the others: `use` tries them in order until
   * one applies.
   */
  async entries(): Promise<{ usable: (BackupEntry & { file: string })[]; problems: string[] }> {
    const usable: (BackupEntry & { file: string })[] = [];
    const problems: string[] = [];
    for (const name of [CURRENT, PREVIOUS]) {
      const path = join(this.dir, name);
      try {
        const read = await this.read(path);
        if (read) usable.push({ file: path, text: read.text, etag: read.etag, revision: read.revision, savedAt: read.savedAt });
      } catch (err) {
        problems.push(`${path}: ${(err as Error).message}`);
      }
    }
    return { usable, problems };
  }

  /** The backup in `path`, its secrets opened, and the file as it is; null when there is none; throws what is wrong. */
  private async read(path: string): Promise<(BackupEntry & { raw: string }) | null> {
    let raw: string;
    try {
      raw = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let file: Partial<BackupFile>;
    try {
      file = JSON.parse(raw) as Partial<BackupFile>;
    } catch {
      throw new Error('not valid JSON (cut short or altered)');
    }
    const sealed = typeof file.sealed === 'string' ? file.sealed : undefined;
    if (typeof file.text !== 'string' || file.sha256 !== digest(file.text, sealed)) {
      throw new Error('its digest does not match its content (cut short or altered)');
    }
    const text = sealed === undefined ? file.text : unsealSecrets(file.text, sealed, await this.backupKey(false));
    return { text, etag: file.etag ?? null, revision: file.revision ?? null, savedAt: String(file.savedAt), raw };
  }
}

const SEAL_VERSION = 'v1';
const fingerprint = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 12);

/**
 * Takes the values of the secret named values out of a document (JSON, as the control plane sends it) and seals them:
 * `v1.<key fingerprint>.<iv>.<tag>.<ciphertext>` (base64url), with the emptied document as additional data. The key is
 * asked for only when there is a secret (a gateway without secrets makes no key file).
 */
/** Where a secret named value's previous value (a rotation's) is kept among the sealed secrets. */
const PREVIOUS_SUFFIX = '#previous';

export async function sealSecrets(text: string, keyOf: () => Promise<Buffer>): Promise<{ text: string; sealed?: string }> {
  let doc: { namedValues?: Record<string, NamedValue> };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return { text }; // not JSON: a document from the control plane always is; nothing of it is known to be secret
  }
  const secrets: Record<string, string> = {};
  for (const [name, named] of Object.entries(doc.namedValues ?? {})) {
    if (!named?.secret) continue;
    secrets[name] = named.value;
    named.value = '';
    // A rotation's previous value is as secret as the value ('#' is never part of a name).
    if (named.previous) {
      secrets[`${name}${PREVIOUS_SUFFIX}`] = named.previous.value;
      named.previous.value = '';
    }
  }
  if (Object.keys(secrets).length === 0) return { text };
  const emptied = JSON.stringify(doc);
  const key = await keyOf();
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(emptied));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
  const parts = [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url'));
  return { text: emptied, sealed: [SEAL_VERSION, fingerprint(key), ...parts].join('.') };
}

/** The document with its sealed secrets put back; throws saying why they cannot be opened. */
export function unsealSecrets(text: string, sealed: string, key: Buffer): string {
  const [version, keyId, iv, tag, ciphertext] = sealed.split('.');
  if (version !== SEAL_VERSION || !keyId || !iv || !tag || ciphertext === undefined) throw new Error('its sealed secrets are malformed');
  if (keyId !== fingerprint(key)) {
    throw new Error(`its secrets were sealed with another backup key (${keyId}; this gateway's is ${fingerprint(key)}): was GATEHOUSE_BACKUP_KEY changed?`);
  }
  let secrets: Record<string, string>;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(text));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    const plain = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
    secrets = JSON.parse(plain.toString('utf8')) as Record<string, string>;
  } catch {
    throw new Error('its sealed secrets do not open with the backup key (altered)');
  }
  const doc = JSON.parse(text) as { namedValues?: Record<string, NamedValue> };
  for (const [sealedName, value] of Object.entries(secrets)) {
    const previous = sealedName.endsWith(PREVIOUS_SUFFIX);
    const name = previous ? sealedName.slice(0, -PREVIOUS_SUFFIX.length) : sealedName;
    const named = doc.namedValues?.[name];
    if (!named || (previous && !named.previous)) throw new Error(`its sealed secret ${sealedName} has no place in the document (altered)`);
    if (previous) named.previous!.value = value;
    else named.value = value;
  }
  return JSON.stringify(doc);
}
