-- Operations: every action that completes later (create, delete, power actions),
-- with who asked, its status and outcome. Idempotency keys: the first answer
-- to a create sent with an Idempotency-Key header, replayed to its retries.

CREATE TABLE operations (
  id               CHAR(26)      NOT NULL,
  tenant_id        CHAR(36)      NULL,
  user_id          CHAR(26)      NULL,
  token_id         CHAR(26)      NULL,
  kind             VARCHAR(32)   NOT NULL,
  target_type      VARCHAR(32)   NOT NULL,
  target_id        CHAR(26)      NOT NULL,
  status           ENUM('pending', 'running', 'succeeded', 'failed', 'cancelled') NOT NULL,
  cloud_action_id  BIGINT        NULL,
  result           TEXT          NULL,
  error            VARCHAR(1000) NOT NULL DEFAULT '',
  created_at       DATETIME(6)   NOT NULL,
  updated_at       DATETIME(6)   NOT NULL,
  PRIMARY KEY (id),
  KEY operations_tenant (tenant_id, id),
  KEY operations_tenant_status (tenant_id, status, id),
  KEY operations_target (target_id, kind, status),
  KEY operations_open (status, kind)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE idempotency_keys (
  tenant_id    CHAR(36)     NOT NULL,
  idem_key     VARCHAR(255) NOT NULL,
  fingerprint  CHAR(64)     NOT NULL,
  state        ENUM('running', 'done') NOT NULL,
  status       SMALLINT     NULL,
  headers      TEXT         NULL,
  body         MEDIUMTEXT   NULL,
  resource_id  CHAR(26)     NULL,
  created_at   DATETIME(6)  NOT NULL,
  expires_at   DATETIME(6)  NOT NULL,
  PRIMARY KEY (tenant_id, idem_key),
  KEY idempotency_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
