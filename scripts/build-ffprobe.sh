#!/usr/bin/env bash
# A minimal, statically linked ffprobe from Debian's own ffmpeg source package (bookworm),
# configured with only what validation needs: the containers, parsers and decoders below, the
# file protocol, no external library. It starts in about a millisecond (Debian's ffprobe
# binds ~215 shared libraries first) and is the one the image ships (see Dockerfile).
#
#   scripts/build-ffprobe.sh [--demux-only] [OUT_DIR]
#
# --demux-only builds the image's second ffprobe (ffprobe-demux): the same, without the video
# decoders. ffprobe decodes a video stream's first frames only to fill in what MP4/MOV already
# declare for r2-sync's verdict (codecs, dimensions, durations), and decoding them is nearly all
# its cost (38 ms of the bench's 40 Mbit/s H.264 keyframe, 6 ms without). r2-sync asks it first
# and keeps its answer only for MP4/MOV whose video streams it fully describes, and asks the
# full one otherwise (src/probe.rs; FFPROBE_DEMUX_PATH).
#
# Prints the built program's path as its last line. The build is cached under OUT_DIR
# (default ${CARGO_TARGET_DIR:-target}/ffprobe) in a folder keyed by the hash of the configure
# options below, so a rerun is instant; changing them builds anew (and so does a change of
# RECIPE, to be bumped when the steps below change what is built).
# Needs (as root it installs them): gcc, make, nasm, libc6-dev, zlib1g-dev, dpkg-dev and xz-utils, and a deb-src
# line for bookworm, which it adds when apt has none.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMUX_ONLY=
if [ "${1:-}" = --demux-only ]; then
    DEMUX_ONLY=1
    shift
fi

# The containers validation meets, with image files (the verdict accepts still images).
DEMUXERS=(mov matroska avi mpegts mpegps flv ogg wav mp3 flac aac ac3 gif image2 image_png_pipe
    image_jpeg_pipe image_webp_pipe image_bmp_pipe)
# Parsers give codec parameters (dimensions, sample rates) without decoding a whole frame.
PARSERS=(h264 hevc vp8 vp9 av1 mpeg4video mpegvideo aac aac_latm mpegaudio ac3 flac opus vorbis
    mjpeg png gif webp bmp)
# Decoders: what find_stream_info decodes to complete a stream's parameters. AV1 has no
# software decoder here (Debian's uses libdav1d); its parser and container give the same
# codec and dimensions (tests/it/probe_corpus.rs holds both to it).
DECODERS=(h264 hevc vp8 vp9 av1 mpeg4 mpeg1video mpeg2video aac mp3 mp3float opus vorbis flac
    pcm_s16le pcm_s16be pcm_s24le pcm_s32le pcm_f32le pcm_u8 pcm_alaw pcm_mulaw mjpeg png gif
    webp bmp)
# ffprobe-demux: audio (one frame completes a stream's sample format) and still images (no
# parser gives an image's dimensions) only.
VIDEO_DECODERS=(h264 hevc vp8 vp9 av1 mpeg4 mpeg1video mpeg2video)
if [ -n "$DEMUX_ONLY" ]; then
    kept=()
    for decoder in "${DECODERS[@]}"; do
        [[ " ${VIDEO_DECODERS[*]} " == *" $decoder "* ]] || kept+=("$decoder")
    done
    DECODERS=("${kept[@]}")
fi

join() {
    local IFS=,
    echo "$*"
}
CONFIGURE=(
    --disable-everything --disable-autodetect --disable-doc --disable-debug --disable-network
    --disable-ffmpeg --disable-ffplay --enable-ffprobe
    --disable-avdevice --disable-avfilter --disable-swscale --disable-postproc
    --enable-static --disable-shared --extra-ldflags=-static
    # zlib (static, as everything here): the PNG decoder inflates, and MP4 and Matroska may
    # hold zlib-compressed headers. The one library Debian's ffprobe has that verdicts need.
    --enable-zlib
    --enable-protocol=file
    --enable-demuxer="$(join "${DEMUXERS[@]}")"
    --enable-parser="$(join "${PARSERS[@]}")"
    --enable-decoder="$(join "${DECODERS[@]}")"
)

RECIPE=1
OUT_ROOT=${1:-${CARGO_TARGET_DIR:-target}/ffprobe}
KEY=$(printf '%s\n' "$RECIPE" "${CONFIGURE[@]}" | sha256sum | cut -c1-16)
mkdir -p "$OUT_ROOT"
OUT_ROOT=$(cd "$OUT_ROOT" && pwd)
OUT="$OUT_ROOT/$KEY"

# One build at a time (tests and scripts may ask at once); the others wait and reuse it.
exec 9>"$OUT_ROOT/.lock"
flock 9
if [ -x "$OUT/ffprobe" ]; then
    echo "$OUT/ffprobe"
    exit 0
fi

as_root() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }
missing=()
# nasm: the decoders' SIMD, as Debian's build has it. ffprobe decodes a few frames of each
# stream to fill in its parameters (7 of an H.264 stream without B-frames); on the bench's
# 40 Mbit/s 720p H.264 that is 38 ms of CPU with it, 42 without.
tools=(gcc:gcc make:make dpkg-source:dpkg-dev xz:xz-utils)
[ "$(uname -m)" != x86_64 ] || tools+=(nasm:nasm)
for tool in "${tools[@]}"; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
[ -e "/usr/lib/$multiarch/libc.a" ] || missing+=(libc6-dev)
[ -e "/usr/lib/$multiarch/libz.a" ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# apt-get source reads deb-src entries; Debian's images ship only deb ones.
if ! grep -rqs '^\(Types:.*deb-src\|deb-src \)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    printf '%s\n' "Types: deb-src" "URIs: $mirror" "Suites: bookworm bookworm-updates" "Components: main" \
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" \
        "Types: deb-src" "URIs: ${mirror%/debian}/debian-security" "Suites: bookworm-security" \
        "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
        as_root tee /etc/apt/sources.list.d/r2-sync-deb-src.sources >/dev/null
    as_root apt-get update -qq
fi

WORK=$(mktemp -d "$OUT_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
(cd "$WORK" && apt-get source -qq ffmpeg >source.log 2>&1) || {
    # A stale package list names a version the mirror no longer has.
    as_root apt-get update -qq
    (cd "$WORK" && apt-get source -qq ffmpeg >source.log 2>&1)
} || { tail -20 "$WORK/source.log" >&2; exit 1; }
src=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'ffmpeg-*')
version=$(cd "$src" && dpkg-parsechangelog -S Version)
cd "$src"
./configure "${CONFIGURE[@]}" >"$WORK/configure.log" 2>&1 || { tail -30 "$WORK/configure.log" >&2; exit 1; }
# A misspelt component is only a warning to configure; here it is an error (it would leave
# out a format Debian's ffprobe has, and change verdicts).
if grep 'did not match anything' "$WORK/configure.log" >&2; then exit 1; fi
# Nor may configure drop one whose dependency is missing (the PNG decoder without zlib).
for kind in DEMUXER PARSER DECODER; do
    declare -n names="${kind}S"
    for name in "${names[@]}"; do
        grep -qs "define CONFIG_${name^^}_${kind} 1" config.h config_components.h ||
            { echo "configure left out the $name ${kind,,}" >&2; exit 1; }
    done
done
nice make -j"$(nproc)" ffprobe >"$WORK/make.log" 2>&1 || { tail -30 "$WORK/make.log" >&2; exit 1; }
mkdir -p "$OUT.tmp"
strip -o "$OUT.tmp/ffprobe" ffprobe
echo "Debian ffmpeg $version, built in $(($(date +%s) - start)) s: scripts/build-ffprobe.sh ${CONFIGURE[*]}" \
    >"$OUT.tmp/BUILD"
mv "$OUT.tmp" "$OUT"
cat "$OUT/BUILD" >&2
echo "$OUT/ffprobe"
