#!/bin/sh
# charter serve with curl: one decision, a batch, everything about one customer, a log search.
#
#   CHARTER_URL=http://127.0.0.1:8080 CHARTER_TOKEN=charter_… sh examples/http/curl.sh
#
# CHARTER_TOKEN needs the `decide` scope; the log search uses CHARTER_LOG_TOKEN (`log:read`),
# CHARTER_TOKEN when it is not set. Without a tokens file (`charter serve` on loopback only),
# leave both unset. Each answer is printed as one line of JSON; curl fails (exit 22) on an
# error answer after printing its body: {"error": {"code", "message", "hint"}}.
# curl 7.82 or later (`--json`: it sends `Content-Type: application/json`, which the service needs).
set -eu

URL=${CHARTER_URL:-http://127.0.0.1:8080}
TOKEN=${CHARTER_TOKEN:-}
LOG_TOKEN=${CHARTER_LOG_TOKEN:-$TOKEN}
HERE=$(cd "$(dirname "$0")" && pwd)
NOW=2025-06-30T00:00:00Z

# one call: the path, the token, then curl's own options (the body)
call() {
    path=$1 token=$2
    shift 2
    if [ -n "$token" ]; then
        set -- -H "Authorization: Bearer $token" "$@"
    fi
    curl -sS --fail-with-body "$@" "$URL$path"
    echo
}

# 1. one access decision: the answer names its decision_id (the log record), bundle and snapshot
call /v1/decide/access "$TOKEN" --json @- <<EOF
{"now": "$NOW",
 "facts": {"subject": {"id": "u009", "roles": ["agent"], "department": "west"},
           "action": "read", "purpose": "service",
           "resource": {"customer": "C000001", "record_type": "customer_profile",
                        "record": {"name": "x", "phone": "18460269859"}}}}
EOF

# 2. a batch: one `now` for all, one result per item in order (an item that cannot be decided
#    holds {"index", "error"} in its place)
call /v1/decide/access/batch "$TOKEN" --json @- <<EOF
{"now": "$NOW",
 "facts": [{"subject": {"id": "u009", "roles": ["agent"]}, "action": "read", "purpose": "service",
            "resource": {"customer": "C000001", "record_type": "customer_profile", "record": {"name": "x"}}},
           {"subject": {"id": "u032", "roles": ["auditor"]}, "action": "delete", "purpose": "audit",
            "resource": {"customer": "C000002", "record_type": "customer_profile", "record": {"phone": "1"}}}]}
EOF

# 3. everything about one customer: tiering, classification, retention, escalation per ticket, access
{
    printf '{"now": "%s", "customer": ' "$NOW"
    cat "$HERE/../customer.json"
    printf ', "tickets": [{"id": "T1", "category": "complaint", "severity": "major",'
    printf ' "complexity": "simple", "opened_at": "%s"}],' "$NOW"
    printf ' "access": {"subject": {"id": "u009", "roles": ["agent"]}, "action": "read",'
    printf ' "purpose": "service", "fields": ["name", "phone"]}}'
} | call /v1/customer "$TOKEN" --json @-

# 4. the decision log, for auditors: this customer's access decisions (at most 5)
call "/v1/log/records?customer=C000001&domain=access&limit=5" "$LOG_TOKEN"
