//! The Lua scripts of the Redis user store: each is one atomic step on the server.

/// KEYS[1]: an account. ARGV[1]: the value the caller read, ARGV[2]: its replacement. Writes
/// only when the value is still the one read; returns 1 when it wrote.
pub(super) const REPLACE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS[1]: the account key, KEYS[2]: the canonical email key, KEYS[3..]: the email keys of
/// earlier releases' spellings. ARGV[1]: the id, ARGV[2]: the account JSON. Returns 0 when
/// stored, 1 when the email is taken, 2 when the id is taken.
pub(super) const INSERT: &str = r"
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 1 end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 0
";

/// KEYS[1]: the account key, KEYS[2]: the new address's canonical key, KEYS[3..3+n): the keys
/// of its earlier spellings (checked only), KEYS[3+n..]: the old address's keys. ARGV[1]: the
/// account as read, ARGV[2]: as changed, ARGV[3]: the id, ARGV[4]: n. Returns 0 when changed,
/// 1 when another account has the new address, 2 when the account changed since it was read.
pub(super) const CHANGE_EMAIL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 2 end
local n = tonumber(ARGV[4])
for i = 2, 2 + n do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[3] then return 1 end
end
for i = 3 + n, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[3] then redis.call('DEL', KEYS[i]) end
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return 0
";

/// KEYS[1]: the account key, KEYS[2..]: its address's keys. ARGV[1]: the account as read,
/// ARGV[2]: the id. Returns 1 when deleted, 2 when the account changed since it was read.
pub(super) const DELETE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 2 end
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2] then redis.call('DEL', KEYS[i]) end
end
redis.call('DEL', KEYS[1])
return 1
";
