-- Servers that expire (expiry.py): `expires_at` is when the monitor deletes
-- the server (NULL: never), to the second, UTC; `expiry_warned_at` is when
-- its owner's warning was queued, set in the transaction that queues it so the
-- mail goes once (cleared when the expiry moves past the warning window again).
ALTER TABLE servers
  ADD COLUMN expires_at DATETIME NULL,
  ADD COLUMN expiry_warned_at DATETIME(6) NULL,
  ADD KEY servers_expiry (expires_at);
