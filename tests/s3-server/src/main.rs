//! The S3-compatible server that r2-sync's tests, demo and benchmarks run against.
//!
//! It is `s3s-fs` (objects as plain files, SigV4, ranges, multipart, MD5 ETags) with two
//! additions R2 has and s3s-fs lacks or hides: `If-Match` on `GET`, and a counter of the body
//! bytes it has sent (`GET /_stats`), so tests can prove a resumed download fetched only the
//! missing bytes. `GET /_requests` lists every request line it received, method and target
//! exactly as sent, one per line, so tests can prove which objects a client addressed. On
//! start it prints `listening on <addr>` so a harness can bind port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures::TryStreamExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Opt {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, env = "S3_ACCESS_KEY")]
    access_key: String,
    #[arg(long, env = "S3_SECRET_KEY")]
    secret_key: String,
    /// Root directory: one sub-directory per bucket.
    root: PathBuf,
}

struct Counted {
    fs: FileSystem,
    root: PathBuf,
    sent: Arc<AtomicU64>,
}

/// `bytes 100-199/1000` → 100.
fn range_start(content_range: &str) -> Option<u64> {
    content_range.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

// Generates the whole `impl S3` so that `async_trait` sees the expanded methods.
macro_rules! impl_s3_delegating {
    ($($name:ident: $input:ty => $output:ty;)* { $($own:item)* }) => {
        #[async_trait::async_trait]
        impl S3 for Counted {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$name(req).await
                }
            )*
            $($own)*
        }
    };
}

impl_s3_delegating! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        put_object: PutObjectInput => PutObjectOutput;
        head_object: HeadObjectInput => HeadObjectOutput;
        delete_object: DeleteObjectInput => DeleteObjectOutput;
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
        copy_object: CopyObjectInput => CopyObjectOutput;
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
        upload_part: UploadPartInput => UploadPartOutput;
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
        list_parts: ListPartsInput => ListPartsOutput;
    {
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let encode = wants_url_encoding(req.input.encoding_type.as_ref());
        let mut resp = self.fs.list_objects(req).await?;
        if encode {
            let out = &mut resp.output;
            url_encode_listing(&mut out.contents, &mut out.common_prefixes);
            for field in [&mut out.prefix, &mut out.delimiter, &mut out.marker, &mut out.next_marker] {
                url_encode_opt(field);
            }
        }
        Ok(resp)
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let encode = wants_url_encoding(req.input.encoding_type.as_ref());
        let mut resp = self.fs.list_objects_v2(req).await?;
        if encode {
            let out = &mut resp.output;
            url_encode_listing(&mut out.contents, &mut out.common_prefixes);
            for field in [&mut out.prefix, &mut out.delimiter, &mut out.start_after] {
                url_encode_opt(field);
            }
        }
        Ok(resp)
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let expected = req.input.if_match.clone();
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut resp = self.fs.get_object(req).await?;
        if let Some(ETagCondition::ETag(expected)) = expected {
            let matches = resp.output.e_tag.as_ref().is_some_and(|e| e.strong_cmp(&expected));
            if !matches {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        // s3s-fs streams in 4 KiB reads, which caps one stream near 100 MB/s; serve the same
        // bytes from the same file in 1 MiB reads instead, counting what goes out.
        drop(resp.output.body.take());
        let start = resp.output.content_range.as_deref().and_then(range_start).unwrap_or(0);
        let len = resp.output.content_length.unwrap_or(0).max(0) as u64;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| s3_error!(e, NoSuchKey))?;
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| s3_error!(e, InternalError))?;
        let sent = Arc::clone(&self.sent);
        let counted = tokio_util::io::ReaderStream::with_capacity(file.take(len), 1 << 20).inspect_ok(move |chunk| {
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        });
        resp.output.body = Some(StreamingBlob::wrap(counted));
        Ok(resp)
    }
    }
}

/// `encoding-type=url`: the client (boto3 and the AWS CLI ask by default) decodes every key
/// of the listing, so each must be sent encoded; s3s-fs echoes the parameter but sends keys
/// raw, and `a+b` then reads as `a b`, `100%25` as `100%`.
fn wants_url_encoding(encoding: Option<&EncodingType>) -> bool {
    encoding.is_some_and(|e| e.as_str() == EncodingType::URL)
}

/// Everything but unreserved characters and `/`, as S3 encodes keys.
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn url_encode_opt(value: &mut Option<String>) {
    if let Some(v) = value {
        *v = percent_encoding::utf8_percent_encode(v, KEY_ESCAPES).to_string();
    }
}

fn url_encode_listing(contents: &mut Option<Vec<Object>>, prefixes: &mut Option<Vec<CommonPrefix>>) {
    for object in contents.iter_mut().flatten() {
        url_encode_opt(&mut object.key);
    }
    for prefix in prefixes.iter_mut().flatten() {
        url_encode_opt(&mut prefix.prefix);
    }
}

fn stats_response(sent: u64) -> http::Response<s3s::Body> {
    let body = format!("{{\"get_body_bytes\":{sent}}}");
    text_response("application/json", body)
}

fn text_response(content_type: &str, body: String) -> http::Response<s3s::Body> {
    http::Response::builder()
        .header("content-type", content_type)
        .body(s3s::Body::from(body))
        .expect("static response is valid")
}

/// `GET /media/a%20b?x=1`: the method and the request target as the client sent it (a target
/// has no spaces or line breaks, so a line holds exactly one).
fn request_line<B>(req: &http::Request<B>) -> String {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    format!("{} {target}", req.method())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let opt = Opt::parse();
    std::fs::create_dir_all(&opt.root)?;
    let sent = Arc::new(AtomicU64::new(0));
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let fs = FileSystem::new(&opt.root).map_err(|e| format!("{e:?}"))?;
    let root = opt.root.canonicalize()?;
    let mut builder = S3ServiceBuilder::new(Counted {
        fs,
        root,
        sent: Arc::clone(&sent),
    });
    builder.set_auth(SimpleAuth::from_single(opt.access_key, opt.secret_key));
    let service = builder.build();

    let listener = TcpListener::bind(opt.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        // Only latency: a socket that refuses it is served all the same.
        drop(socket.set_nodelay(true));
        let service = service.clone();
        let sent = Arc::clone(&sent);
        let requests = Arc::clone(&requests);
        let handler = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let service = service.clone();
            let sent = Arc::clone(&sent);
            let requests = Arc::clone(&requests);
            async move {
                match req.uri().path() {
                    "/_stats" => return Ok(stats_response(sent.load(Ordering::Relaxed))),
                    "/_requests" => {
                        let lines = requests.lock().expect("request log poisoned").join("\n");
                        return Ok(text_response("text/plain", lines));
                    }
                    _ => requests.lock().expect("request log poisoned").push(request_line(&req)),
                }
                service.call(req.map(s3s::Body::from)).await
            }
        });
        let conn = http.serve_connection(TokioIo::new(socket), handler).into_owned();
        tokio::spawn(async move {
            // A client that went away mid-request ends its connection; nothing to report.
            drop(conn.await);
        });
    }
}
