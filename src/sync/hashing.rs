//! MD5 and SHA-256 of a transfer, each computed on its own blocking thread as the bytes go
//! by. Inline, hashing took most of a core and halved a 2-core NAS's throughput; on their
//! own threads the two hashes overlap the network and the disk. Channels are bounded, so a
//! slow hash slows the transfer instead of buffering it in memory.

use std::task::{Context, Poll};

use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

/// Chunks in flight per hash.
const DEPTH: usize = 8;

pub struct Lane {
    tx: PollSender<Bytes>,
    done: JoinHandle<String>,
}

fn lane<D: Digest + Send + 'static>() -> Lane {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let done = tokio::task::spawn_blocking(move || {
        let mut digest = D::new();
        while let Some(chunk) = rx.blocking_recv() {
            digest.update(&chunk);
        }
        hex::encode(digest.finalize())
    });
    Lane {
        tx: PollSender::new(tx),
        done,
    }
}

fn gone() -> std::io::Error {
    std::io::Error::other("a hashing thread stopped")
}

/// Below this size a transfer is hashed inline: handing a few chunks to two threads costs
/// more than hashing them.
pub const THREADED_FROM: u64 = 8 << 20;

/// The hashes of one transfer. MD5 only when the object's ETag is one to check it against.
pub enum Hashes {
    Threaded { md5: Option<Lane>, sha256: Lane },
    Inline { md5: Option<Md5>, sha256: Sha256 },
}

/// Hex digests of everything fed.
pub struct Digests {
    pub md5: Option<String>,
    pub sha256: String,
}

impl Digests {
    /// The digests of a body held in memory, computed on the calling thread.
    pub fn of(body: &[u8], with_md5: bool) -> Self {
        Digests {
            md5: with_md5.then(|| hex::encode(Md5::digest(body))),
            sha256: hex::encode(Sha256::digest(body)),
        }
    }
}

impl Hashes {
    /// Hashes for an object of `size` bytes.
    pub fn start(with_md5: bool, size: u64) -> Self {
        if size < THREADED_FROM {
            return Hashes::Inline {
                md5: with_md5.then(Md5::new),
                sha256: Sha256::new(),
            };
        }
        Hashes::Threaded {
            md5: with_md5.then(lane::<Md5>),
            sha256: lane::<Sha256>(),
        }
    }

    fn lanes(&mut self) -> impl Iterator<Item = &mut Lane> {
        let (md5, sha256) = match self {
            Hashes::Threaded { md5, sha256 } => (md5.as_mut(), Some(sha256)),
            Hashes::Inline { .. } => (None, None),
        };
        md5.into_iter().chain(sha256)
    }

    /// Ready when every hash can take another chunk.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        for lane in self.lanes() {
            match lane.tx.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(gone())),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Hands a chunk to every hash; call after [`Hashes::poll_ready`] answered ready.
    pub fn feed(&mut self, chunk: Bytes) -> std::io::Result<()> {
        if let Hashes::Inline { md5, sha256 } = self {
            if let Some(md5) = md5 {
                md5.update(&chunk);
            }
            sha256.update(&chunk);
            return Ok(());
        }
        for lane in self.lanes() {
            lane.tx.send_item(chunk.clone()).map_err(|_| gone())?;
        }
        Ok(())
    }

    /// [`Hashes::poll_ready`] then [`Hashes::feed`], for code outside a poll function.
    pub async fn feed_async(&mut self, chunk: Bytes) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await?;
        self.feed(chunk)
    }

    pub async fn finish(mut self) -> std::io::Result<Digests> {
        for lane in self.lanes() {
            lane.tx.close();
        }
        match self {
            Hashes::Inline { md5, sha256 } => Ok(Digests {
                md5: md5.map(|m| hex::encode(m.finalize())),
                sha256: hex::encode(sha256.finalize()),
            }),
            Hashes::Threaded { md5, sha256 } => {
                let md5 = match md5 {
                    Some(lane) => Some(lane.done.await.map_err(|_| gone())?),
                    None => None,
                };
                let sha256 = sha256.done.await.map_err(|_| gone())?;
                Ok(Digests { md5, sha256 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn digests_match_the_reference_vectors_threaded_or_inline() {
        for size in [0, THREADED_FROM] {
            let mut h = Hashes::start(true, size);
            h.feed_async(Bytes::from_static(b"a")).await.unwrap();
            h.feed_async(Bytes::from_static(b"bc")).await.unwrap();
            let d = h.finish().await.unwrap();
            assert_eq!(d.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
            assert_eq!(
                d.sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
            let d = Hashes::start(false, size).finish().await.unwrap();
            assert_eq!(d.md5, None);
            assert_eq!(
                d.sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
        }
    }
}
