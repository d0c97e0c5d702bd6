#!/usr/bin/env bash
# make test-containers-broken: proves that the container checks fail when the image is broken.
#
#   scripts/test-containers-broken.sh
#
# For each deliberate break below, a copy of this tree (the files git tracks or would track) gets a
# Dockerfile broken that one way, and the check runs on that copy (--context) and must fail, with the
# message that names the break. The real tree is never modified; the copy is deleted at the end. Not in
# CI: each case builds an image (about 20 s each from the layer cache), and this proves the checks, not
# the project.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { printf 'test-containers-broken: %s\n' "$*" >&2; }

# case NAME CHECK EXPECTED SED-EXPRESSION: break the copy's Dockerfile with SED-EXPRESSION, run CHECK
# (test-image or test-compose) on it; pass when it fails and its output contains EXPECTED.
failures=0
case_() {
  local name=$1 check=$2 expected=$3 expr=$4 copy=$WORK/$1
  mkdir -p "$copy"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$copy" -xf -
  sed -i -e "$expr" "$copy/Dockerfile"
  if cmp -s "$ROOT/Dockerfile" "$copy/Dockerfile"; then
    log "$name: the sed expression changed nothing; the case is stale"; failures=$((failures + 1)); return
  fi
  log "$name: running $check on a copy whose Dockerfile is broken ($expr)"
  if timeout -k 60 900 "$ROOT/scripts/$check.sh" --context "$copy" >"$WORK/$name.log" 2>&1; then
    log "$name: FAILED: $check passed on a broken Dockerfile"; failures=$((failures + 1))
  elif grep -qF -- "$expected" "$WORK/$name.log"; then
    log "$name: ok: $check failed with: $(grep -F -- "$expected" "$WORK/$name.log" | head -n 1)"
  else
    tail -n 20 "$WORK/$name.log" >&2
    log "$name: FAILED: $check failed, but not with \"$expected\" (above)"; failures=$((failures + 1))
  fi
}

# The build must fail: the image's own check finds no migrations without sql/.
case_ no-migrations test-image "the image did not build" '/^COPY sql\//d'
# Builds and serves, but the HEALTHCHECK asks a port nothing listens on.
case_ healthcheck-port test-image "the HEALTHCHECK did not pass" "s/os.environ.get('HTTP_PORT', '8080')/'1'/"
# Builds and serves, but as root.
case_ runs-as-root test-image "the image does not run as user 10001:10001" '/^USER /d'
# The service's command exits instead of serving: /readyz never answers.
case_ no-serve test-image "the service exited before it was ready" 's/^CMD .*/CMD ["l0-service", "check-config"]/'
# The compose check builds the same Dockerfile: a broken build fails it before anything starts.
case_ compose-no-migrations test-compose "the image did not build" '/^COPY sql\//d'

if ((failures)); then log "$failures case(s) did not fail as they should"; exit 1; fi
log "every broken Dockerfile made its check fail"
