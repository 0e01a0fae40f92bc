//! Streamed authenticated encryption of attachments: AES-256-GCM in fixed-size segments, the
//! STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption
//! and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015, §7; the layout Tink's
//! `AesGcmHkdfStreaming` uses).
//!
//! Layout of a ciphertext: a header — the magic `PSTSTRM1` and a random 7-byte nonce prefix —
//! then segments of [`SEGMENT`] plaintext bytes, each followed by its 16-byte GCM tag; the
//! last segment may be shorter (and is empty only for an empty plaintext). Segment `i` is
//! encrypted under the nonce `prefix ‖ i (32-bit big-endian) ‖ last` where `last` is 1 for the
//! final segment and 0 otherwise, with the header as associated data. So:
//! - a changed byte anywhere fails its segment's tag;
//! - reordered or repeated segments fail (the position is in the nonce);
//! - a stream cut at a segment boundary fails (its new last segment was sealed as not final);
//! - bytes after the final segment fail (the final segment then decrypts as not final);
//! - segments spliced from another stream fail (another key, or another prefix in the nonce).
//!
//! Each attachment gets its own key ([`derive_key`]: HKDF-SHA-256 of the message's content key
//! with the attachment's index), so no (key, nonce) pair ever repeats across attachments.
//! Every failure is the one generic `decryption-failed`, as for XML Encryption.
//!
//! Both sides work in bounded memory: [`Encryptor`] and [`Decryptor`] take input in pieces of
//! any size and hold at most one segment; [`encrypt`] and [`decrypt`] run them between a reader
//! and a writer.

use std::io::{Read, Write};

use openssl::symm::{Cipher, Crypter, Mode};

use crate::problem::Problem;

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// Bytes of each segment's tag.
pub const TAG: usize = 16;
/// The header: magic and nonce prefix.
pub const HEADER: usize = MAGIC.len() + PREFIX;
const MAGIC: &[u8; 8] = b"PSTSTRM1";
const PREFIX: usize = 7;

/// The ciphertext length for a plaintext of `len` bytes.
pub fn ciphertext_len(len: u64) -> u64 {
    let segments = len.div_ceil(SEGMENT as u64).max(1);
    HEADER as u64 + len + segments * TAG as u64
}

/// The key of attachment `index` of a message: HKDF-SHA-256 (RFC 5869) of the message's content
/// key, info `poststelle attachment` and the index.
pub fn derive_key(content_key: &[u8], index: u32) -> Result<[u8; 32], Problem> {
    use openssl::pkey::Id;
    use openssl::pkey_ctx::PkeyCtx;
    let fail = |_| super::encrypt::failed();
    let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(fail)?;
    ctx.derive_init().map_err(fail)?;
    ctx.set_hkdf_md(openssl::md::Md::sha256()).map_err(fail)?;
    ctx.set_hkdf_key(content_key).map_err(fail)?;
    ctx.add_hkdf_info(b"poststelle attachment").map_err(fail)?;
    ctx.add_hkdf_info(&index.to_be_bytes()).map_err(fail)?;
    let mut out = [0u8; 32];
    ctx.derive(Some(&mut out)).map_err(fail)?;
    Ok(out)
}

fn nonce(prefix: &[u8], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..PREFIX].copy_from_slice(prefix);
    n[PREFIX..PREFIX + 4].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// One segment sealed or opened, appended to `out`; `tag` is read (decrypt) or written
/// (encrypt).
#[allow(clippy::too_many_arguments)]
fn gcm(
    encrypt: bool,
    key: &[u8; 32],
    header: &[u8],
    counter: u32,
    last: bool,
    input: &[u8],
    tag: &mut [u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    let prefix = &header[MAGIC.len()..];
    let mode = if encrypt { Mode::Encrypt } else { Mode::Decrypt };
    let mut c = Crypter::new(Cipher::aes_256_gcm(), mode, key, Some(&nonce(prefix, counter, last))).ok()?;
    c.aad_update(header).ok()?;
    if !encrypt {
        c.set_tag(tag).ok()?;
    }
    // GCM is a stream mode: the output is as long as the input (OpenSSL asks for a block of
    // room beyond it).
    let at = out.len();
    out.resize(at + input.len() + 16, 0);
    let mut n = c.update(input, &mut out[at..]).ok()?;
    n += c.finalize(&mut out[at + n..]).ok()?;
    out.truncate(at + n);
    if encrypt {
        c.get_tag(tag).ok()?;
    }
    Some(())
}

/// Cuts `data`, after what waits in `pending`, into pieces of `size` and hands `each` every piece
/// known not to be the last (a byte after it arrived): straight from `data` where a whole piece
/// lies there, else through `pending`, which keeps the rest (at most `size` bytes).
fn not_last(
    pending: &mut Vec<u8>,
    mut data: &[u8],
    size: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), Problem>,
) -> Result<(), Problem> {
    while !data.is_empty() {
        if pending.is_empty() && data.len() > size {
            each(&data[..size])?;
            data = &data[size..];
            continue;
        }
        let take = (size + 1 - pending.len()).min(data.len());
        pending.extend_from_slice(&data[..take]);
        data = &data[take..];
        if pending.len() > size {
            each(&pending[..size])?;
            pending.drain(..size);
        }
    }
    Ok(())
}

/// Encrypts a stream given in pieces: [`Encryptor::push`] returns what is ready,
/// [`Encryptor::finish`] the rest with the final segment.
pub struct Encryptor {
    key: [u8; 32],
    header: [u8; HEADER],
    counter: u32,
    pending: Vec<u8>,
    started: bool,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Encryptor")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// A stream under `key` with a fresh random nonce prefix.
    pub fn new(key: &[u8; 32]) -> Result<Encryptor, Problem> {
        let mut header = [0u8; HEADER];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        openssl::rand::rand_bytes(&mut header[MAGIC.len()..]).map_err(|_| super::encrypt::failed())?;
        Ok(Encryptor {
            key: *key,
            header,
            counter: 0,
            pending: Vec::with_capacity(SEGMENT + 1),
            started: false,
        })
    }

    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), Problem> {
        if !self.started {
            out.extend_from_slice(&self.header);
            self.started = true;
        }
        let mut tag = [0u8; TAG];
        gcm(true, &self.key, &self.header, self.counter, last, plain, &mut tag, out)
            .ok_or_else(super::encrypt::failed)?;
        out.extend_from_slice(&tag);
        // 2^32 segments of 64 KiB = 256 TiB: far past any limit; refused rather than wrapped.
        self.counter = self.counter.checked_add(1).ok_or_else(super::encrypt::failed)?;
        Ok(())
    }

    /// Takes more plaintext; returns the ciphertext ready so far. A full segment is sealed only
    /// once a byte after it arrived, since the final segment is sealed differently.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, Problem> {
        let mut out = Vec::with_capacity(HEADER + data.len() + (data.len() / SEGMENT + 1) * TAG);
        let mut pending = std::mem::take(&mut self.pending);
        let sealed = not_last(&mut pending, data, SEGMENT, |segment| {
            self.seal(segment, false, &mut out)
        });
        self.pending = pending;
        sealed.map(|()| out)
    }

    /// The final segment (with the header, if nothing was sealed yet).
    pub fn finish(mut self) -> Result<Vec<u8>, Problem> {
        let mut out = Vec::new();
        let last = std::mem::take(&mut self.pending);
        self.seal(&last, true, &mut out)?;
        Ok(out)
    }
}

/// Decrypts a stream given in pieces: [`Decryptor::push`] returns the plaintext of every
/// segment known not to be the last; [`Decryptor::finish`] checks and returns the final one.
pub struct Decryptor {
    key: [u8; 32],
    header: Vec<u8>,
    counter: u32,
    pending: Vec<u8>,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    pub fn new(key: &[u8; 32]) -> Decryptor {
        Decryptor {
            key: *key,
            header: Vec::with_capacity(HEADER),
            counter: 0,
            pending: Vec::with_capacity(SEGMENT + TAG + 1),
        }
    }

    fn open(&mut self, sealed: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), Problem> {
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        let mut tag = tag.to_vec();
        gcm(false, &self.key, &self.header, self.counter, last, body, &mut tag, out)
            .ok_or_else(super::encrypt::failed)?;
        self.counter = self.counter.checked_add(1).ok_or_else(super::encrypt::failed)?;
        Ok(())
    }

    /// Takes more ciphertext; returns the plaintext of the segments that are complete and
    /// followed by more (so not the last).
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<u8>, Problem> {
        let mut out = Vec::new();
        if self.header.len() < HEADER {
            let take = (HEADER - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() == HEADER && &self.header[..MAGIC.len()] != MAGIC {
                return Err(super::encrypt::failed());
            }
        }
        out.reserve(data.len());
        let mut pending = std::mem::take(&mut self.pending);
        let opened = not_last(&mut pending, data, SEGMENT + TAG, |segment| {
            self.open(segment, false, &mut out)
        });
        self.pending = pending;
        opened.map(|()| out)
    }

    /// The final segment's plaintext; fails for a stream cut short or extended.
    pub fn finish(mut self) -> Result<Vec<u8>, Problem> {
        if self.header.len() < HEADER || self.pending.len() < TAG {
            return Err(super::encrypt::failed());
        }
        let last = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(last.len());
        self.open(&last, true, &mut out)?;
        Ok(out)
    }
}

/// Encrypts everything `from` yields into `to`; returns the plaintext length.
pub fn encrypt(key: &[u8; 32], from: &mut impl Read, to: &mut impl Write) -> Result<u64, StreamError> {
    let mut e = Encryptor::new(key)?;
    // Several segments per read: whole segments are sealed straight from the buffer.
    let mut buf = vec![0u8; 4 * SEGMENT];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        to.write_all(&e.push(&buf[..n])?)?;
    }
    to.write_all(&e.finish()?)?;
    Ok(total)
}

/// Decrypts everything `from` yields into `to`. On a failure, what was written before is not
/// authenticated as a whole: write to a temporary place and keep it only on `Ok`.
pub fn decrypt(key: &[u8; 32], from: &mut impl Read, to: &mut impl Write) -> Result<u64, StreamError> {
    let mut d = Decryptor::new(key);
    let mut buf = vec![0u8; 4 * (SEGMENT + TAG)];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let plain = d.push(&buf[..n])?;
        total += plain.len() as u64;
        to.write_all(&plain)?;
    }
    let plain = d.finish()?;
    total += plain.len() as u64;
    to.write_all(&plain)?;
    Ok(total)
}

/// A stream that could not be read or written, or did not decrypt.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{}", .0.detail)]
    Crypto(Problem),
}

impl From<Problem> for StreamError {
    fn from(p: Problem) -> Self {
        StreamError::Crypto(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn seal(plain: &[u8], key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt(key, &mut &plain[..], &mut out).unwrap();
        out
    }

    fn open(sealed: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::new();
        decrypt(key, &mut &sealed[..], &mut out)?;
        Ok(out)
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        openssl::rand::rand_bytes(&mut b).unwrap();
        b
    }

    #[test]
    fn every_length_round_trips_and_has_the_computed_length() {
        for len in [
            0,
            1,
            100,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            2 * SEGMENT,
            3 * SEGMENT + 17,
        ] {
            let plain = noise(len);
            let sealed = seal(&plain, &KEY);
            assert_eq!(sealed.len() as u64, ciphertext_len(len as u64), "length {len}");
            assert_eq!(open(&sealed, &KEY).unwrap(), plain, "length {len}");
        }
    }

    #[test]
    fn pieces_of_any_size_give_the_same_result() {
        let plain = noise(3 * SEGMENT + 5);
        let mut e = Encryptor::new(&KEY).unwrap();
        let mut sealed = Vec::new();
        for piece in plain.chunks(7777) {
            sealed.extend(e.push(piece).unwrap());
        }
        sealed.extend(e.finish().unwrap());
        let mut d = Decryptor::new(&KEY);
        let mut back = Vec::new();
        for piece in sealed.chunks(12345) {
            back.extend(d.push(piece).unwrap());
        }
        back.extend(d.finish().unwrap());
        assert_eq!(back, plain);
    }

    fn refused(sealed: &[u8], what: &str) {
        match open(sealed, &KEY) {
            Err(StreamError::Crypto(p)) => assert_eq!(p.code, crate::problem::Code::DecryptionFailed, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }

    #[test]
    fn tampering_truncation_reordering_extension_and_splicing_are_refused() {
        let plain = noise(3 * SEGMENT + 100);
        let sealed = seal(&plain, &KEY);
        let seg = SEGMENT + TAG;
        // A flipped bit in the header, in each segment's body and in each tag.
        for at in [
            3,
            HEADER + 5,
            HEADER + seg + 9,
            HEADER + 2 * seg + SEGMENT + 3,
            sealed.len() - 1,
        ] {
            let mut t = sealed.clone();
            t[at] ^= 1;
            refused(&t, &format!("a bit flipped at {at}"));
        }
        // Cut at a segment boundary (the rest looks complete), and cut inside a segment.
        refused(&sealed[..HEADER + 2 * seg], "cut at a boundary");
        refused(&sealed[..sealed.len() - 5], "cut inside the last segment");
        refused(&sealed[..HEADER], "header only");
        // Two segments swapped.
        let mut swapped = sealed[..HEADER].to_vec();
        swapped.extend_from_slice(&sealed[HEADER + seg..HEADER + 2 * seg]);
        swapped.extend_from_slice(&sealed[HEADER..HEADER + seg]);
        swapped.extend_from_slice(&sealed[HEADER + 2 * seg..]);
        refused(&swapped, "two segments swapped");
        // A segment repeated.
        let mut repeated = sealed[..HEADER + seg].to_vec();
        repeated.extend_from_slice(&sealed[HEADER..]);
        refused(&repeated, "a segment repeated");
        // Anything after the final segment.
        let mut extended = sealed.clone();
        extended.extend_from_slice(&sealed[HEADER..HEADER + seg]);
        refused(&extended, "a segment appended");
        // A segment from another stream under the same key (another nonce prefix).
        let other = seal(&plain, &KEY);
        let mut spliced = sealed[..HEADER + seg].to_vec();
        spliced.extend_from_slice(&other[HEADER + seg..HEADER + 2 * seg]);
        spliced.extend_from_slice(&sealed[HEADER + 2 * seg..]);
        refused(&spliced, "a segment from another stream");
        // Another key.
        assert!(open(&sealed, &[8; 32]).is_err());
    }

    #[test]
    fn each_attachment_gets_its_own_key() {
        let cek = [1u8; 32];
        let (k0, k1) = (derive_key(&cek, 0).unwrap(), derive_key(&cek, 1).unwrap());
        assert_ne!(k0, k1);
        assert_eq!(k0, derive_key(&cek, 0).unwrap());
        assert_ne!(k0, derive_key(&[2u8; 32], 0).unwrap());
    }
}
