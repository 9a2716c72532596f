#!/usr/bin/env bash
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Dry run of cutting the release (`make changelog`): `antsibull-changelog release` for the
# version in galaxy.yml, on a throwaway copy of the files git knows about, so the fragments
# in the repository stay where they are. Fails unless the release notes come out complete.
#
#   tests/changelog/release-dry-run.sh TOOLS_BIN_DIR
set -euo pipefail

bin=$(readlink -f "$1")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
copy=$tmp/ansible_collections/qemu/vm
mkdir -p "$copy"
(cd "$repo" && git ls-files -z -co --exclude-standard \
    | rsync -a --from0 --files-from=- --ignore-missing-args ./ "$copy/")

version=$(sed -n 's/^version: *//p' "$repo/galaxy.yml")
fragments=$(find "$copy/changelogs/fragments" -name '*.yml' | wc -l)
cd "$copy"
env -u PYTHONPATH ANSIBLE_COLLECTIONS_PATH="$tmp" PATH="$bin:$PATH" \
    "$bin/antsibull-changelog" release --version "$version"

fail() { echo "release dry run: $*" >&2; exit 1; }
grep -qx "v$version" CHANGELOG.rst || fail "CHANGELOG.rst has no v$version section"
left=$(find changelogs/fragments -name '*.yml' | wc -l)
[ "$left" -eq 0 ] || fail "$left of $fragments fragments were not consumed"
"$bin/antsibull-changelog" lint-changelog-yaml changelogs/changelog.yaml
# A plugin or role whose version_added is no release would never be listed as new.
"$bin/python" - <<'PY'
import sys
import yaml

with open('changelogs/changelog.yaml') as handle:
    releases = set(yaml.safe_load(handle)['releases'])
with open('changelogs/.plugin-cache.yaml') as handle:
    cache = yaml.safe_load(handle)
wrong = ['%s %s: version_added %s' % (kind, name, info.get('version_added'))
         for section in ('plugins', 'objects') for kind, entries in cache[section].items()
         for name, info in entries.items()
         if info.get('version_added') is not None and str(info['version_added']) not in releases]
if wrong:
    sys.exit('release dry run: version_added is not a release (%s): %s' % (', '.join(sorted(releases)), '; '.join(wrong)))
PY
# Every plugin is new in the first release (modules, connection, inventory, ...).
for plugin in plugins/*/*.py; do
    name=$(basename "$plugin" .py)
    case "$(basename "$(dirname "$plugin")")" in
        module_utils | doc_fragments | action | plugin_utils) continue ;;
    esac
    case "$name" in _*) continue ;; esac
    grep -q "qemu\.vm\.$name" CHANGELOG.rst || fail "qemu.vm.$name is not in the release notes"
done
echo "release dry run: v$version from $fragments fragments, every plugin listed"
