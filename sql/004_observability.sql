-- Observability: counters that outlive CGI processes, and the last known state
-- of background work (the monitor's last run, the cloud's rate-limit headroom).

CREATE TABLE counters (
  name    VARCHAR(64)  NOT NULL,
  labels  VARCHAR(200) NOT NULL,
  value   BIGINT       NOT NULL,
  PRIMARY KEY (name, labels)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE service_state (
  name        VARCHAR(64)  NOT NULL,
  value       VARCHAR(255) NOT NULL,
  updated_at  DATETIME(6)  NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Login failures are counted from the audit log.
ALTER TABLE audit_log ADD KEY audit_action_result (action, result);
