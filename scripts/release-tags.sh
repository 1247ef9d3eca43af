#!/bin/sh
# The image tags a release pushes, one per line, from its git tag (v0.1.0 -> 0.1.0, 0.1,
# latest). A pre-release (v0.2.0-rc.1) is pushed only under its own version: nobody on
# `latest` or `0.2` gets it without asking.
set -eu

tag="${1:?usage: release-tags.sh vX.Y.Z[-pre]}"
version="${tag#v}"
case "$version" in
    *[!0-9A-Za-z.-]* | "" | .* | *..*)
        echo "release-tags: not a version: $tag" >&2
        exit 2
        ;;
esac
core="${version%%-*}"
major_minor="$(echo "$core" | cut -d. -f1,2)"
if ! echo "$core" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$'; then
    echo "release-tags: not a version: $tag" >&2
    exit 2
fi
echo "$version"
if [ "$core" = "$version" ]; then
    echo "$major_minor"
    echo latest
fi
