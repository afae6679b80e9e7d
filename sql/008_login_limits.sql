-- Login limits: every attempt is counted before its password is checked, per
-- (address, account) pair ("pair:<address> <email>"), per address ("addr:")
-- and, from addresses the account has not logged in from, per account
-- ("account:"). `failures` is what was counted since the scope was last quiet
-- (a success takes its own back); at the limit, `blocked_until` is set, and
-- each further attempt doubles the block. `known_until` (pair rows): the
-- account logged in from that address, so the account ceiling spares it.
--
-- Scopes compare byte for byte: a collation that folds case or accents would
-- let one spelling's failures count against another's.
ALTER TABLE login_throttle
  MODIFY scope VARCHAR(330) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  CHANGE window_start last_at DATETIME(6) NOT NULL,
  ADD COLUMN known_until DATETIME(6) NULL;

-- The old per-account counts ("email:") held failures from any address: the
-- account ceiling counts unknown addresses only, and starts afresh.
DELETE FROM login_throttle WHERE scope LIKE 'email:%';
