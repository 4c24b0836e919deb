// The configuration backup, driven directly on real files in a temp folder: what is written (its digest, its secrets
// sealed), what is read back and what is refused with which problem, which file is kept as the previous, the backup
// key (given, read from a file, or made beside the backup), and the sealed secrets' format and its refusals.

import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigBackup, parseBackupKey, sealSecrets, unsealSecrets } from '../runtime/sync/backup.ts';
import { Logger, memorySink, type LogRecord } from '../runtime/telemetry/logger.ts';
import { tempDir } from './support/gateway-process.ts';

const SECRET = 'tok-3f9a-secret-value';
const ROTATED = 'tok-0b1c-rotated-value';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
/** The key's name in a sealed blob: the first 12 hex digits of its sha256. */
const fingerprint = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 12);
const plainDocument = (marker: string) => JSON.stringify({ version: 1, apis: [{ id: marker, pathPrefix: `/${marker}`, backend: { url: 'http://127.0.0.1:1' } }] });
const secretDocument = (marker: string, previous = true) =>
  JSON.stringify({
    version: 1,
    apis: [{ id: marker, pathPrefix: `/${marker}`, backend: { url: 'http://127.0.0.1:1' } }],
    namedValues: {
      token: { value: SECRET, secret: true, ...(previous ? { previous: { value: ROTATED, until: '2030-01-01T00:00:00.000Z' } } : {}) },
      region: { value: 'westeurope' },
    },
  });
type StoredFile = { text: string; sealed?: string; sha256: string; etag: string | null; revision: string | null; savedAt: string };
const stored = (dir: string, name = 'config.json') => JSON.parse(readFileSync(join(dir, name), 'utf8')) as StoredFile;
const revisions = async (backup: ConfigBackup) => (await backup.entries()).usable.map((entry) => entry.revision);
const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => assert.fail('expected a rejection'),
    (err: unknown) => err as Error,
  );

describe('the backup key setting (GATEHOUSE_BACKUP_KEY)', () => {
  const key = randomBytes(32);
  const noFile = (path: string): string => {
    throw new Error(`ENOENT: no such file, open '${path}'`);
  };

  test('the key itself: 64 hex digits (either case) or the base64 of 32 bytes, surrounding blanks ignored', () => {
    assert.deepEqual(parseBackupKey(key.toString('hex'), noFile), key);
    assert.deepEqual(parseBackupKey(key.toString('hex').toUpperCase(), noFile), key);
    assert.deepEqual(parseBackupKey(`  ${key.toString('hex')}\n`, noFile), key);
    assert.deepEqual(parseBackupKey(key.toString('base64'), noFile), key);
    assert.deepEqual(parseBackupKey(`\t${key.toString('base64')} `, noFile), key);
  });

  test('anything else is a file holding the key; a file that is not there, or holds no key, is refused saying so', () => {
    const dir = tempDir('gatehouse-backup-keyfile-');
    const file = join(dir, 'backup-key');
    writeFileSync(file, `${key.toString('hex')}\n`);
    const read = (path: string) => readFileSync(path, 'utf8');
    assert.deepEqual(parseBackupKey(file, read), key);
    writeFileSync(file, key.toString('base64'));
    assert.deepEqual(parseBackupKey(file, read), key);
    assert.throws(() => parseBackupKey(join(dir, 'missing'), read), {
      message: new RegExp(`^neither a key \\(64 hex digits or 44 base64 characters\\) nor a file holding one: ENOENT.*missing`),
    });
    // One digit short, one too many, base64 of 31 bytes or without its padding, not a key at all.
    for (const content of [key.toString('hex').slice(1), `${key.toString('hex')}0`, randomBytes(31).toString('base64'), key.toString('base64').slice(0, 43), 'secret', `x${key.toString('hex')}`, `${key.toString('base64')}x`]) {
      writeFileSync(file, content);
      assert.throws(() => parseBackupKey(file, read), {
        message: `${file} does not hold a key: 32 bytes as 64 hex digits or 44 base64 characters expected`,
      }, content);
    }
    // The same strings given as the setting are not keys either: they are taken for file names.
    for (const given of [key.toString('hex').slice(1), `${key.toString('hex')}0`, key.toString('base64').slice(0, 43), `x${key.toString('hex')}`, `${key.toString('base64')}x`, `x${key.toString('base64')}`]) {
      assert.throws(() => parseBackupKey(given, noFile), /^Error: neither a key/, given);
    }
  });
});

describe('the configuration backup', () => {
  test('a save writes the document with its digest, etag, revision and time, in a folder of its own (0700) made as needed', async () => {
    const dir = join(tempDir('gatehouse-backup-write-'), 'nested', 'backup');
    const backup = new ConfigBackup(dir);
    const before = Date.now();
    await backup.save({ text: plainDocument('a'), etag: '"1"', revision: 'r1' });
    const after = Date.now();
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir), ['config.json'], 'no key is made for a document without secrets');
    const file = stored(dir);
    assert.equal(file.text, plainDocument('a'));
    assert.equal(file.sealed, undefined);
    assert.equal(file.sha256, sha256(plainDocument('a')));
    assert.ok(Date.parse(file.savedAt) >= before - 1 && Date.parse(file.savedAt) <= after + 1, file.savedAt);
    assert.equal(new Date(file.savedAt).toISOString(), file.savedAt);
    const { usable, problems } = await backup.entries();
    assert.deepEqual(problems, []);
    assert.deepEqual(usable, [{ file: join(dir, 'config.json'), text: plainDocument('a'), etag: '"1"', revision: 'r1', savedAt: file.savedAt }]);
  });

  test('each save keeps the one before as the previous, byte for byte; a revision already current is not written again', async () => {
    const dir = tempDir('gatehouse-backup-rotate-');
    const backup = new ConfigBackup(dir);
    await backup.save({ text: plainDocument('a'), etag: '"1"', revision: 'r1' });
    const first = readFileSync(join(dir, 'config.json'), 'utf8');
    await backup.save({ text: plainDocument('b'), etag: '"2"', revision: 'r2' });
    assert.equal(readFileSync(join(dir, 'config.previous.json'), 'utf8'), first);
    assert.deepEqual(await revisions(backup), ['r2', 'r1']);

    // The same document, etag and revision again: nothing changes (the previous is not lost to a repeat).
    const current = readFileSync(join(dir, 'config.json'), 'utf8');
    await backup.save({ text: plainDocument('b'), etag: '"2"', revision: 'r2' });
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), current);
    assert.deepEqual(await revisions(backup), ['r2', 'r1']);

    // Any one of the three different is a new backup.
    await backup.save({ text: plainDocument('b'), etag: '"3"', revision: 'r2' });
    assert.deepEqual((await backup.entries()).usable.map((e) => e.etag), ['"3"', '"2"']);
    await backup.save({ text: plainDocument('b'), etag: '"3"', revision: 'r3' });
    assert.deepEqual(await revisions(backup), ['r3', 'r2']);
    await backup.save({ text: plainDocument('c'), etag: '"3"', revision: 'r3' });
    assert.deepEqual((await backup.entries()).usable.map((e) => [e.revision, e.text]), [['r3', plainDocument('c')], ['r3', plainDocument('b')]]);
  });

  test('a current backup that does not check out is not kept as the previous: the previous stays', async () => {
    const dir = tempDir('gatehouse-backup-damaged-current-');
    const backup = new ConfigBackup(dir);
    await backup.save({ text: plainDocument('a'), etag: '"1"', revision: 'r1' });
    await backup.save({ text: plainDocument('b'), etag: '"2"', revision: 'r2' });
    writeFileSync(join(dir, 'config.json'), '{"text":');
    await backup.save({ text: plainDocument('c'), etag: '"3"', revision: 'r3' });
    assert.deepEqual(await revisions(backup), ['r3', 'r1']);
  });

  test('what cannot be read is reported per file, with what is wrong; a missing file is no problem', async () => {
    const dir = tempDir('gatehouse-backup-problems-');
    const backup = new ConfigBackup(dir);
    assert.deepEqual(await backup.entries(), { usable: [], problems: [] });
    await backup.save({ text: plainDocument('a'), etag: '"1"', revision: 'r1' });
    assert.deepEqual(await backup.entries().then((e) => e.problems), []);

    const current = join(dir, 'config.json');
    const previous = join(dir, 'config.previous.json');
    writeFileSync(current, readFileSync(current, 'utf8').slice(0, -1));
    assert.deepEqual(await backup.entries(), { usable: [], problems: [`${current}: not valid JSON (cut short or altered)`] });

    // Valid JSON without a document, or with another type of document: its digest cannot match.
    for (const content of [{ sha256: sha256('') }, { text: 5, sha256: sha256('5') }, {}]) {
      writeFileSync(current, JSON.stringify(content));
      assert.deepEqual((await backup.entries()).problems, [`${current}: its digest does not match its content (cut short or altered)`], JSON.stringify(content));
    }

    // A file that cannot be read at all (here: a folder in its place) is a problem, not an absent backup.
    rmSync(current);
    mkdirSync(current);
    const unreadable = await backup.entries();
    assert.equal(unreadable.problems.length, 1);
    assert.match(unreadable.problems[0]!, new RegExp(`^${current.replace(/[.]/g, '\\.')}: EISDIR`));

    writeFileSync(previous, 'not json');
    assert.equal((await backup.entries()).problems[1], `${previous}: not valid JSON (cut short or altered)`);
  });

  test('a backup written without etag or revision (an older gateway\'s) reads back with them null', async () => {
    const dir = tempDir('gatehouse-backup-older-');
    const text = plainDocument('a');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ text, sha256: sha256(text), savedAt: '2026-01-02T03:04:05.000Z' }));
    assert.deepEqual((await new ConfigBackup(dir).entries()).usable, [
      { file: join(dir, 'config.json'), text, etag: null, revision: null, savedAt: '2026-01-02T03:04:05.000Z' },
    ]);
  });

  test('a sealed field that is not a string seals nothing: the file checks out by its text alone, and is read as it is', async () => {
    const dir = tempDir('gatehouse-backup-sealed-null-');
    const text = plainDocument('a');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ text, sealed: null, sha256: sha256(text), etag: '"1"', revision: 'r1', savedAt: '2026-01-02T03:04:05.000Z' }));
    assert.deepEqual(await new ConfigBackup(dir).entries(), {
      usable: [{ file: join(dir, 'config.json'), text, etag: '"1"', revision: 'r1', savedAt: '2026-01-02T03:04:05.000Z' }],
      problems: [],
    });
  });

  test('a document that is not JSON is kept as it is: nothing in it is known to be secret', async () => {
    const dir = tempDir('gatehouse-backup-not-json-');
    const backup = new ConfigBackup(dir);
    await backup.save({ text: 'version: 1', etag: null, revision: null });
    assert.deepEqual((await backup.entries()).usable.map((e) => e.text), ['version: 1']);
    assert.ok(!existsSync(join(dir, 'backup.key')));
  });

  test('temporary files of a writer that died are removed at an instance\'s first save, once', async () => {
    const dir = tempDir('gatehouse-backup-sweep-');
    const hourAgo = new Date(Date.now() - 3_600_000);
    const abandoned = (name: string) => {
      writeFileSync(join(dir, name), 'partial');
      utimesSync(join(dir, name), hourAgo, hourAgo);
    };
    abandoned('config.json.0123456789abcdef.tmp');
    const backup = new ConfigBackup(dir);
    await backup.save({ text: plainDocument('a'), etag: null, revision: 'r1' });
    assert.deepEqual(readdirSync(dir), ['config.json']);
    // The sweep is a start's: later saves of the same instance write and rename their own temporary files only.
    abandoned('config.json.fedcba9876543210.tmp');
    await backup.save({ text: plainDocument('b'), etag: null, revision: 'r2' });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'config.json.fedcba9876543210.tmp', 'config.previous.json']);
  });
});

describe('secrets in the backup', () => {
  test('secret values (and a rotation\'s previous value) are sealed with the given key, bound to the digest, and read back whole', async () => {
    const dir = tempDir('gatehouse-backup-sealed-');
    const key = randomBytes(32);
    const backup = new ConfigBackup(dir, { key });
    await backup.save({ text: secretDocument('a'), etag: '"1"', revision: 'r1' });
    const raw = readFileSync(join(dir, 'config.json'), 'utf8');
    assert.ok(!raw.includes(SECRET) && !raw.includes(ROTATED), raw);
    assert.ok(!existsSync(join(dir, 'backup.key')), 'a given key is not written down');
    const file = stored(dir);
    const doc = JSON.parse(file.text) as { namedValues: Record<string, { value: string; previous?: { value: string } }> };
    assert.equal(doc.namedValues.token!.value, '');
    assert.equal(doc.namedValues.token!.previous!.value, '');
    assert.equal(doc.namedValues.region!.value, 'westeurope');
    assert.match(file.sealed!, new RegExp(`^v1\\.${fingerprint(key)}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]+$`));
    assert.equal(file.sha256, sha256(`${file.text}\n${file.sealed}`));
    assert.deepEqual((await backup.entries()).usable.map((e) => e.text), [secretDocument('a')]);
    assert.deepEqual((await new ConfigBackup(dir, { key }).entries()).usable.map((e) => e.text), [secretDocument('a')]);
    // Repeating the same revision is recognised from the opened document.
    await backup.save({ text: secretDocument('a'), etag: '"1"', revision: 'r1' });
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), raw);

    // The sealed secrets altered (the digest left as it was) are caught by the digest, before any key is tried.
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...file, sealed: file.sealed!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) }));
    assert.deepEqual((await backup.entries()).problems, [`${join(dir, 'config.json')}: its digest does not match its content (cut short or altered)`]);
  });

  test('a secret without a previous value is sealed alone', async () => {
    const key = randomBytes(32);
    const { text, sealed } = await sealSecrets(secretDocument('a', false), async () => key);
    assert.ok(sealed && !text.includes(SECRET));
    assert.equal(unsealSecrets(text, sealed, key), secretDocument('a', false));
  });

  test('without a given key, one is made beside the backup on the first secret, kept, and warned about; reading never makes one', async () => {
    const dir = tempDir('gatehouse-backup-key-beside-');
    const logs: LogRecord[] = [];
    const logger = new Logger(memorySink(logs), 'debug');
    const keyFile = join(dir, 'backup.key');
    const backup = new ConfigBackup(dir, { logger });
    await backup.save({ text: plainDocument('a'), etag: null, revision: 'r1' });
    assert.ok(!existsSync(keyFile));
    assert.equal(logs.length, 0);

    await backup.save({ text: secretDocument('b'), etag: null, revision: 'r2' });
    const made = readFileSync(keyFile, 'utf8');
    assert.match(made, /^[0-9a-f]{64}\n$/);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(stored(dir).sealed!.split('.')[1], fingerprint(Buffer.from(made.trim(), 'hex')));
    const warning = 'secrets in the configuration backup are encrypted with a key kept beside it: set GATEHOUSE_BACKUP_KEY (from a secret store) to keep the key off the backup volume';
    assert.deepEqual(logs.map((r) => [r.level, r.msg, r.file]), [['warn', warning, keyFile]]);

    // A restart reads the key beside the backup (warned about again) and opens the secrets; the key given is the same one.
    const restarted = new ConfigBackup(dir, { logger });
    assert.deepEqual((await restarted.entries()).usable.map((e) => e.text), [secretDocument('b'), plainDocument('a')]);
    assert.equal(logs.length, 2);
    assert.deepEqual((await new ConfigBackup(dir, { key: Buffer.from(made.trim(), 'hex') }).entries()).problems, []);
    await restarted.save({ text: secretDocument('c'), etag: null, revision: 'r3' });
    assert.equal(readFileSync(keyFile, 'utf8'), made, 'the key is made once');
    assert.equal(logs.length, 2, 'the key is read once an instance');

    // The key damaged: reading says so (not that there is none), and leaves it for the operator.
    writeFileSync(keyFile, 'damaged\n');
    assert.deepEqual((await new ConfigBackup(dir).entries()).problems, [
      `${join(dir, 'config.json')}: ${keyFile} does not hold a backup key (damaged?): remove it, or set GATEHOUSE_BACKUP_KEY`,
      `${join(dir, 'config.previous.json')}: ${keyFile} does not hold a backup key (damaged?): remove it, or set GATEHOUSE_BACKUP_KEY`,
    ]);
    assert.equal(readFileSync(keyFile, 'utf8'), 'damaged\n');

    // The key gone: the sealed backups cannot be opened, and reading does not make a new key.
    rmSync(keyFile);
    const { usable, problems } = await new ConfigBackup(dir).entries();
    assert.deepEqual(usable, []);
    assert.deepEqual(problems, [
      `${join(dir, 'config.json')}: its secrets are sealed, but there is no backup key: GATEHOUSE_BACKUP_KEY is not set and ${keyFile} is gone`,
      `${join(dir, 'config.previous.json')}: its secrets are sealed, but there is no backup key: GATEHOUSE_BACKUP_KEY is not set and ${keyFile} is gone`,
    ]);
    assert.ok(!existsSync(keyFile));
  });

  test('a damaged key file is refused, not replaced; once it is fixed the same instance uses it', async () => {
    const dir = tempDir('gatehouse-backup-key-damaged-');
    const keyFile = join(dir, 'backup.key');
    writeFileSync(keyFile, 'not a key\n');
    const backup = new ConfigBackup(dir);
    const err = await rejection(backup.save({ text: secretDocument('a'), etag: null, revision: 'r1' }));
    assert.equal(err.message, `${keyFile} does not hold a backup key (damaged?): remove it, or set GATEHOUSE_BACKUP_KEY`);
    assert.equal(readFileSync(keyFile, 'utf8'), 'not a key\n');
    const key = randomBytes(32);
    writeFileSync(keyFile, key.toString('base64'));
    await backup.save({ text: secretDocument('a'), etag: null, revision: 'r1' });
    assert.deepEqual((await new ConfigBackup(dir, { key }).entries()).usable.map((e) => e.text), [secretDocument('a')]);
  });

  test('a key file that cannot be read is an error of its own, not a missing key', async () => {
    const dir = tempDir('gatehouse-backup-key-unreadable-');
    mkdirSync(join(dir, 'backup.key'));
    const err = await rejection(new ConfigBackup(dir).save({ text: secretDocument('a'), etag: null, revision: 'r1' }));
    assert.match(err.message, /EISDIR/);
  });

  test('a key that cannot be written is an error of its own, not a missing key', async () => {
    // A folder whose path leaves room for backup.key but not for the temporary file it is written through
    // (PATH_MAX is 4096 bytes on Linux): creating the key fails with ENAMETOOLONG, while reading it finds no file.
    let dir = tempDir('gatehouse-backup-key-unwritable-');
    const room = 4090 - '/backup.key'.length;
    // Each step adds a separator and at least one character, and never passes `room`.
    while (room - dir.length > 1) dir = join(dir, 'd'.repeat(Math.min(200, room - dir.length - 1)));
    const err = await rejection(new ConfigBackup(dir).save({ text: secretDocument('a'), etag: null, revision: 'r1' }));
    assert.equal((err as NodeJS.ErrnoException).code, 'ENAMETOOLONG', err.message);
  });

  test('replicas making the key at once agree on one: the first written wins, the others read it', async () => {
    const dir = tempDir('gatehouse-backup-key-race-');
    const replicas = Array.from({ length: 6 }, () => new ConfigBackup(dir));
    await Promise.all(replicas.map((r, i) => r.save({ text: secretDocument('a'), etag: `"${i}"`, revision: `r${i}` })));
    const key = Buffer.from(readFileSync(join(dir, 'backup.key'), 'utf8').trim(), 'hex');
    for (const r of [...replicas, new ConfigBackup(dir, { key })]) {
      const { usable, problems } = await r.entries();
      assert.deepEqual(problems, []);
      assert.ok(usable.length > 0 && usable.every((u) => u.text === secretDocument('a')));
    }
  });

  test('a backup sealed with another key says which key it needs', async () => {
    const dir = tempDir('gatehouse-backup-other-key-');
    const sealedWith = randomBytes(32);
    const other = randomBytes(32);
    await new ConfigBackup(dir, { key: sealedWith }).save({ text: secretDocument('a'), etag: null, revision: 'r1' });
    assert.deepEqual((await new ConfigBackup(dir, { key: other }).entries()).problems, [
      `${join(dir, 'config.json')}: its secrets were sealed with another backup key (${fingerprint(sealedWith)}; this gateway's is ${fingerprint(other)}): was GATEHOUSE_BACKUP_KEY changed?`,
    ]);
  });
});

describe('sealed secrets', () => {
  const key = randomBytes(32);
  /** Seals `secrets` as sealSecrets does, for `text`: to make blobs that open but do not fit their document. */
  const sealRaw = (text: string, secrets: Record<string, string>) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(text));
    const ciphertext = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
    return ['v1', fingerprint(key), ...[iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url'))].join('.');
  };

  test('a named value that is not an object, or not secret, is left in the document', async () => {
    const text = JSON.stringify({ version: 1, apis: [], namedValues: { odd: null, plain: { value: 'v' }, off: { value: 'w', secret: false } } });
    assert.deepEqual(await sealSecrets(text, () => Promise.reject(new Error('no key wanted'))), { text });
    const noValues = JSON.stringify({ version: 1, apis: [] });
    assert.deepEqual(await sealSecrets(noValues, () => Promise.reject(new Error('no key wanted'))), { text: noValues });
  });

  test('the sealed form is checked part by part before anything is decrypted', async () => {
    const { text, sealed } = await sealSecrets(secretDocument('a'), async () => key);
    const [version, keyId, iv, tag, ciphertext] = sealed!.split('.') as [string, string, string, string, string];
    for (const malformed of [
      ['v2', keyId, iv, tag, ciphertext].join('.'),
      ['', keyId, iv, tag, ciphertext].join('.'),
      [version, '', iv, tag, ciphertext].join('.'),
      [version, keyId, '', tag, ciphertext].join('.'),
      [version, keyId, iv, '', ciphertext].join('.'),
      [version, keyId, iv, tag].join('.'),
      '',
    ]) {
      assert.throws(() => unsealSecrets(text, malformed, key), { message: 'its sealed secrets are malformed' }, malformed);
    }
    const altered = { message: 'its sealed secrets do not open with the backup key (altered)' };
    assert.throws(() => unsealSecrets(text, [version, keyId, iv, tag, ''].join('.'), key), altered);
    assert.throws(() => unsealSecrets(text, [version, keyId, iv, tag, `${ciphertext}AA`].join('.'), key), altered);
    assert.throws(() => unsealSecrets(text, [version, keyId, randomBytes(12).toString('base64url'), tag, ciphertext].join('.'), key), altered);
    assert.throws(() => unsealSecrets(text.replace('westeurope', 'northeurope'), sealed!, key), altered);
    // Moved into another document's backup: bound to the document it was sealed with.
    const elsewhere = await sealSecrets(secretDocument('b'), async () => key);
    assert.throws(() => unsealSecrets(elsewhere.text, sealed!, key), altered);
    assert.equal(unsealSecrets(text, sealed!, key), secretDocument('a'));
  });

  test('a secret that opens but has no place in its document is refused', () => {
    const withToken = JSON.stringify({ version: 1, namedValues: { token: { value: '', secret: true } } });
    const withoutValues = JSON.stringify({ version: 1 });
    for (const [text, secrets, name] of [
      [withToken, { other: 'x' }, 'other'],
      [withToken, { 'token#previous': 'x' }, 'token#previous'],
      [withoutValues, { token: 'x' }, 'token'],
    ] as const) {
      assert.throws(() => unsealSecrets(text, sealRaw(text, secrets), key), { message: `its sealed secret ${name} has no place in the document (altered)` });
    }
    assert.equal(unsealSecrets(withToken, sealRaw(withToken, { token: 'x' }), key), JSON.stringify({ version: 1, namedValues: { token: { value: 'x', secret: true } } }));
  });
});
