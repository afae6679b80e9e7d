-- Accounts: registration verified by mail, password reset by mail, and API
-- tokens that end with their owner's access.
--
-- `email_verified_at`: when the user proved the address (a verified
-- registration, a password reset). Users made by an admin, by the admin
-- command or before this migration have NULL until they do.
ALTER TABLE users ADD COLUMN email_verified_at DATETIME(6) NULL AFTER email;

-- A registration waiting for its address to be verified (CP_REGISTRATION=
-- verify): nothing else exists until then. The tenant id is chosen now (the
-- mail carries it); the tenant and its admin are made when the link's token
-- comes back, once (`used_at`), before `expires_at`. Several may wait for one
-- address: whichever is verified first takes it. Only a SHA-256 of the token
-- is kept.
CREATE TABLE registrations (
  token_hash     CHAR(64)     NOT NULL,
  email          VARCHAR(254) NOT NULL,
  name           VARCHAR(255) NOT NULL,
  tenant_name    VARCHAR(255) NOT NULL,
  tenant_id      CHAR(36)     NOT NULL,
  password_hash  VARCHAR(100) NOT NULL,
  created_at     DATETIME(6)  NOT NULL,
  expires_at     DATETIME(6)  NOT NULL,
  used_at        DATETIME(6)  NULL,
  PRIMARY KEY (token_hash),
  KEY registrations_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A password reset mailed to a user: a SHA-256 of its token, used once
-- before `expires_at`. Using one ends the user's other outstanding ones too.
CREATE TABLE password_resets (
  token_hash  CHAR(64)    NOT NULL,
  user_id     CHAR(26)    NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  expires_at  DATETIME(6) NOT NULL,
  used_at     DATETIME(6) NULL,
  PRIMARY KEY (token_hash),
  KEY password_resets_user (user_id),
  KEY password_resets_expiry (expires_at),
  CONSTRAINT password_resets_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Disabling a user now revokes their API tokens, so that enabling them again
-- brings none back; users disabled before this get the same.
UPDATE api_tokens t JOIN users u ON u.id = t.user_id
  SET t.revoked_at = UTC_TIMESTAMP(6)
  WHERE u.disabled = 1 AND t.revoked_at IS NULL;

-- login_throttle also counts the mail that registrations and password resets
-- send: per client address ("mail-from:<address>") and per recipient
-- ("mail-to:<email>"), with the same reserve-before-work update as logins;
-- and wrong current passwords given to a password change ("password:<user>").
