-- Servers: one row per VM a user asked for, written before the cloud is called.
-- Status moves pending -> ready | error, and ready -> deleting -> deleted;
-- deleted rows stay as history.
CREATE TABLE servers (
  id            CHAR(26)      NOT NULL,
  owner         VARCHAR(255)  NOT NULL DEFAULT '',
  description   VARCHAR(1000) NOT NULL DEFAULT '',
  name          VARCHAR(255)  NOT NULL,
  region        VARCHAR(64)   NOT NULL,
  size          VARCHAR(64)   NOT NULL,
  image         VARCHAR(128)  NOT NULL,
  tags          TEXT          NOT NULL,
  instance_id   BIGINT        NULL,
  status        ENUM('pending', 'ready', 'error', 'deleting', 'deleted') NOT NULL,
  status_reason VARCHAR(1000) NOT NULL DEFAULT '',
  public_ip     VARCHAR(45)   NULL,
  private_ip    VARCHAR(45)   NULL,
  created_at    DATETIME(6)   NOT NULL,
  updated_at    DATETIME(6)   NOT NULL,
  ready_at      DATETIME(6)   NULL,
  deleted_at    DATETIME(6)   NULL,
  PRIMARY KEY (id),
  UNIQUE KEY servers_instance (instance_id),
  KEY servers_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
