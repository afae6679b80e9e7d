-- Invitations: a user an admin adds, when addresses are verified
-- (CP_REGISTRATION=verify or closed), is made only when the invited address's
-- owner sends back the mailed token with a password of their own. Until then
-- nothing but this row exists, and only for an address without an account: an
-- address that has one gets a note instead, so the admin's answer is the same
-- either way. Only a SHA-256 of the token is kept; it is used once
-- (`used_at`), before `expires_at`, and only while `invited_by` is still an
-- active admin of the tenant.
CREATE TABLE invitations (
  token_hash  CHAR(64)     NOT NULL,
  tenant_id   CHAR(36)     NOT NULL,
  email       VARCHAR(254) NOT NULL,
  name        VARCHAR(255) NOT NULL,
  role        ENUM('viewer', 'developer', 'operator', 'admin') NOT NULL,
  invited_by  CHAR(26)     NOT NULL,
  created_at  DATETIME(6)  NOT NULL,
  expires_at  DATETIME(6)  NOT NULL,
  used_at     DATETIME(6)  NULL,
  PRIMARY KEY (token_hash),
  KEY invitations_expiry (expires_at),
  CONSTRAINT invitations_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id),
  CONSTRAINT invitations_inviter_fk FOREIGN KEY (invited_by) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
