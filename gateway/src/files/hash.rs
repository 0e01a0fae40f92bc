//! SHA-256 of an attachment beside the work it rides along with. A streamed attachment is
//! hashed at every boundary it crosses (the seal checks the plaintext and hashes the stream,
//! the open checks the author's digest); on one thread the hash costs as much as the cipher and
//! the disk together (BENCHMARKS.md, "Where a gigabyte's time goes"). [`HashBeside`] hashes on
//! a thread of its own: the caller copies its bytes into pieces that a bounded channel hands
//! over, so at most a few pieces (≤ 1 MiB) are in memory whatever the file's size.
//!
//! Used for every attachment file: intake's upload writer, the partner's arriving stream, and
//! the seal and open stages. In async code `update` and `finish` may wait for the hashing
//! thread; it hashes faster than a connection delivers, so the wait is for at most the pieces
//! queued (under a millisecond).

use std::sync::mpsc;

/// Bytes per piece handed to the hashing thread.
const PIECE: usize = 256 * 1024;
/// Pieces waiting for the hashing thread before `update` waits for it.
const QUEUED: usize = 2;

/// SHA-256 computed on its own thread. `update` copies and hands over; [`finish`](Self::finish)
/// waits for the digest. Without a thread (spawning failed) it hashes on the caller's.
pub struct HashBeside {
    pending: Vec<u8>,
    beside: Option<Beside>,
    inline: openssl::sha::Sha256,
}

struct Beside {
    to: mpsc::SyncSender<Vec<u8>>,
    spare: mpsc::Receiver<Vec<u8>>,
    worker: std::thread::JoinHandle<[u8; 32]>,
}

impl Default for HashBeside {
    fn default() -> Self {
        Self::new()
    }
}

impl HashBeside {
    pub fn new() -> Self {
        let (to, from) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
        let (back, spare) = mpsc::channel();
        let worker = std::thread::Builder::new().name("hash".into()).spawn(move || {
            let mut hash = openssl::sha::Sha256::new();
            for piece in from {
                hash.update(&piece);
                // The caller may be gone (it failed): then the piece is simply dropped.
                let _ = back.send(piece);
            }
            hash.finish()
        });
        HashBeside {
            pending: Vec::with_capacity(PIECE),
            beside: worker.ok().map(|worker| Beside { to, spare, worker }),
            inline: openssl::sha::Sha256::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let Some(beside) = &self.beside else {
            self.inline.update(data);
            return;
        };
        while !data.is_empty() {
            let k = (PIECE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.pending.len() == PIECE {
                let mut next = beside.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(PIECE));
                next.clear();
                let full = std::mem::replace(&mut self.pending, next);
                if beside.to.send(full).is_err() {
                    // The thread is gone (it cannot fail short of a panic): finish reports it.
                    return;
                }
            }
        }
    }

    /// The digest of everything passed to `update`.
    pub fn finish(self) -> std::io::Result<[u8; 32]> {
        let HashBeside {
            pending,
            beside,
            mut inline,
        } = self;
        let Some(Beside { to, worker, .. }) = beside else {
            inline.update(&pending);
            return Ok(inline.finish());
        };
        let lost = || std::io::Error::other("the hashing thread ended early");
        if !pending.is_empty() {
            to.send(pending).map_err(|_| lost())?;
        }
        drop(to);
        worker.join().map_err(|_| lost())
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hash: HashBeside,
    pub len: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: HashBeside::new(),
            len: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hash: HashBeside,
    pub len: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: HashBeside::new(),
            len: 0,
        }
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_of_everything_in_any_pieces() {
        let data: Vec<u8> = (0..(3 * PIECE + 12345)).map(|i| (i * 7 + i / 251) as u8).collect();
        let want = openssl::sha::sha256(&data);
        for step in [1, 1000, PIECE - 1, PIECE, PIECE + 1, data.len()] {
            let mut h = HashBeside::new();
            for chunk in data.chunks(step) {
                h.update(chunk);
            }
            assert_eq!(h.finish().unwrap(), want, "pieces of {step}");
        }
        assert_eq!(HashBeside::new().finish().unwrap(), openssl::sha::sha256(b""));
    }
}
