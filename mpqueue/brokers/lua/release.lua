-- KEYS: ready:* pmax held leases stats errors wake watch cancels ids where + done:<id>
-- Hand a reserved job back unrun (a graceful stop), fenced by its token: its attempt
-- is refunded and it goes to the front of its priority's list.
-- ARGV: id, token. KEYS[NKEYS + 1]: done:<id>. A job with a cancel request ends as
-- cancelled instead. Returns 1, 0 when the token no longer owns the job, or what
-- the cancel request asked ('ask' or 'kill').
local id, token = ARGV[1], ARGV[2]
local env, reply = settle_start(id, token, KEYS[NKEYS + 1])
if not env then return reply end
local jid, n, prio, body = parse(env)
prio = tonumber(prio or '0')
if jid then env = jid .. ' ' .. math.max(0, tonumber(n) - 1) .. ' ' .. prio .. ' ' .. body end
if enqueue(env, prio, true) then wake() end
return 1
