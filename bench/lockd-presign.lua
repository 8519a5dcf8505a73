-- bench/lockd-presign.lua: wrk script for bench-lockd.sh. Every request is
-- POST /v1/repos/$LOCKD_REPO/presign {op: get, 3 keys} with the Bearer token
-- $LOCKD_TOKEN.
local repo, token = os.getenv("LOCKD_REPO"), os.getenv("LOCKD_TOKEN")
wrk.method = "POST"
wrk.path = "/v1/repos/" .. repo .. "/presign"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"op":"get","keys":["config","keys/0123456789abcdef","log/00000000000000000001"]}'
