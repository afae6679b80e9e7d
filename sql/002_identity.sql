-- Identity: tenants, their users, login sessions, API tokens, the mail outbox,
-- login throttling and the audit log. Servers now belong to a tenant.

CREATE TABLE tenants (
  id          CHAR(36)     NOT NULL,
  name        VARCHAR(255) NOT NULL,
  created_at  DATETIME(6)  NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Emails are stored lower-cased; the unique key makes them unique whatever the case.
CREATE TABLE users (
  id              CHAR(26)     NOT NULL,
  tenant_id       CHAR(36)     NOT NULL,
  email           VARCHAR(254) NOT NULL,
  name            VARCHAR(255) NOT NULL,
  password_hash   VARCHAR(100) NOT NULL,
  role            ENUM('viewer', 'developer', 'operator', 'admin') NOT NULL,
  platform_admin  TINYINT      NOT NULL DEFAULT 0,
  disabled        TINYINT      NOT NULL DEFAULT 0,
  created_at      DATETIME(6)  NOT NULL,
  updated_at      DATETIME(6)  NOT NULL,
  deleted_at      DATETIME(6)  NULL,
  PRIMARY KEY (id),
  UNIQUE KEY users_email (email),
  KEY users_tenant (tenant_id, id),
  CONSTRAINT users_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A login session: one refresh-token family. Revoking it ends the refresh
-- tokens and, since access tokens name their session, the access tokens too.
CREATE TABLE sessions (
  id              CHAR(26)     NOT NULL,
  user_id         CHAR(26)     NOT NULL,
  created_at      DATETIME(6)  NOT NULL,
  expires_at      DATETIME(6)  NOT NULL,
  revoked_at      DATETIME(6)  NULL,
  revoked_reason  VARCHAR(100) NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  KEY sessions_user (user_id),
  CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Only a SHA-256 of each refresh token is kept. `used_at` set means rotated:
-- presenting it again is a replay and revokes the whole session.
CREATE TABLE refresh_tokens (
  token_hash  CHAR(64)    NOT NULL,
  session_id  CHAR(26)    NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  expires_at  DATETIME(6) NOT NULL,
  used_at     DATETIME(6) NULL,
  PRIMARY KEY (token_hash),
  KEY refresh_session (session_id),
  CONSTRAINT refresh_session_fk FOREIGN KEY (session_id) REFERENCES sessions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Personal API tokens for CI; shown once, kept only as a SHA-256.
CREATE TABLE api_tokens (
  id          CHAR(26)     NOT NULL,
  user_id     CHAR(26)     NOT NULL,
  name        VARCHAR(100) NOT NULL,
  role        ENUM('viewer', 'developer', 'operator', 'admin') NOT NULL,
  token_hash  CHAR(64)     NOT NULL,
  created_at  DATETIME(6)  NOT NULL,
  expires_at  DATETIME(6)  NULL,
  revoked_at  DATETIME(6)  NULL,
  PRIMARY KEY (id),
  UNIQUE KEY api_tokens_hash (token_hash),
  KEY api_tokens_user (user_id, id),
  CONSTRAINT api_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Mail waits here until the SMTP server takes it; the mail cron job retries.
CREATE TABLE outbox (
  id               BIGINT        NOT NULL AUTO_INCREMENT,
  recipient        VARCHAR(254)  NOT NULL,
  subject          VARCHAR(255)  NOT NULL,
  body             TEXT          NOT NULL,
  created_at       DATETIME(6)   NOT NULL,
  attempts         INT           NOT NULL DEFAULT 0,
  next_attempt_at  DATETIME(6)   NOT NULL,
  last_error       VARCHAR(500)  NOT NULL DEFAULT '',
  sent_at          DATETIME(6)   NULL,
  PRIMARY KEY (id),
  KEY outbox_due (sent_at, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Failed logins per account ("email:...") and per client address ("addr:...").
CREATE TABLE login_throttle (
  scope          VARCHAR(300) NOT NULL,
  failures       INT          NOT NULL,
  window_start   DATETIME(6)  NOT NULL,
  blocked_until  DATETIME(6)  NULL,
  PRIMARY KEY (scope)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE audit_log (
  id           BIGINT       NOT NULL AUTO_INCREMENT,
  at           DATETIME(6)  NOT NULL,
  tenant_id    CHAR(36)     NULL,
  user_id      CHAR(26)     NULL,
  token_id     CHAR(26)     NULL,
  action       VARCHAR(64)  NOT NULL,
  target       VARCHAR(255) NOT NULL DEFAULT '',
  result       ENUM('ok', 'denied', 'failed') NOT NULL,
  status       SMALLINT     NOT NULL,
  client_addr  VARCHAR(45)  NOT NULL DEFAULT '',
  request_id   VARCHAR(64)  NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  KEY audit_tenant (tenant_id, id),
  KEY audit_tenant_action (tenant_id, action, id),
  KEY audit_tenant_user (tenant_id, user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Servers made before tenants existed keep tenant_id NULL until the first
-- platform admin is created (`cloudprovisioner-admin create-admin` adopts them).
ALTER TABLE servers
  ADD COLUMN tenant_id CHAR(36) NULL AFTER id,
  ADD KEY servers_tenant (tenant_id, id),
  ADD KEY servers_tenant_status (tenant_id, status, id);
