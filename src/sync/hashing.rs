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

struct Lane {
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

/// The hashes of one transfer. MD5 only when the object's ETag is one to check it against.
pub struct Hashes {
    md5: Option<Lane>,
    sha256: Lane,
}

/// Hex digests of everything fed.
pub struct Digests {
    pub md5: Option<String>,
    pub sha256: String,
}

impl Hashes {
    pub fn start(with_md5: bool) -> Self {
        Self {
            md5: with_md5.then(lane::<Md5>),
            sha256: lane::<Sha256>(),
        }
    }

    fn lanes(&mut self) -> impl Iterator<Item = &mut Lane> {
        self.md5.iter_mut().chain(std::iter::once(&mut self.sha256))
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
        let md5 = match self.md5 {
            Some(lane) => Some(lane.done.await.map_err(|_| gone())?),
            None => None,
        };
        let sha256 = self.sha256.done.await.map_err(|_| gone())?;
        Ok(Digests { md5, sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_match_the_reference_vectors() {
        let mut h = Hashes::start(true);
        h.feed_async(Bytes::from_static(b"a")).await.unwrap();
        h.feed_async(Bytes::from_static(b"bc")).await.unwrap();
        let d = h.finish().await.unwrap();
        assert_eq!(d.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = Hashes::start(false).finish().await.unwrap();
        assert_eq!(d.md5, None);
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
