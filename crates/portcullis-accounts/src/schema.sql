-- portcullis-accounts schema (applied by PgDirectory::migrate; idempotent).
CREATE TABLE IF NOT EXISTS portcullis_user_accounts (
    -- Canonical user@domain: lower-case local part, lower-case A-label domain.
    address                    text PRIMARY KEY,
    -- argon2 PHC string; NULL = receive-only mailbox that cannot log in.
    password_hash              text,
    -- false refuses AUTH; the mailbox still receives mail.
    enabled                    boolean NOT NULL DEFAULT true,
    -- Per-account limits; NULL = the relay's default applies.
    messages_per_minute        bigint CHECK (messages_per_minute BETWEEN 0 AND 4294967295),
    messages_per_hour          bigint CHECK (messages_per_hour BETWEEN 0 AND 4294967295),
    recipients_per_minute      bigint CHECK (recipients_per_minute BETWEEN 0 AND 4294967295),
    recipients_per_hour        bigint CHECK (recipients_per_hour BETWEEN 0 AND 4294967295),
    distinct_recipients_per_day bigint CHECK (distinct_recipients_per_day BETWEEN 0 AND 4294967295),
    invalid_recipients_per_day bigint CHECK (invalid_recipients_per_day BETWEEN 0 AND 4294967295),
    max_message_size           bigint CHECK (max_message_size >= 0),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS portcullis_domain_accounts (
    -- Lower-case A-label domain; its password covers every user of it.
    domain                     text PRIMARY KEY,
    password_hash              text NOT NULL,
    enabled                    boolean NOT NULL DEFAULT true,
    messages_per_minute        bigint CHECK (messages_per_minute BETWEEN 0 AND 4294967295),
    messages_per_hour          bigint CHECK (messages_per_hour BETWEEN 0 AND 4294967295),
    recipients_per_minute      bigint CHECK (recipients_per_minute BETWEEN 0 AND 4294967295),
    recipients_per_hour        bigint CHECK (recipients_per_hour BETWEEN 0 AND 4294967295),
    distinct_recipients_per_day bigint CHECK (distinct_recipients_per_day BETWEEN 0 AND 4294967295),
    invalid_recipients_per_day bigint CHECK (invalid_recipients_per_day BETWEEN 0 AND 4294967295),
    max_message_size           bigint CHECK (max_message_size >= 0),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- Extra FROM identities an admin mapped to an account (exactly one owner).
CREATE TABLE IF NOT EXISTS portcullis_identities (
    user_address text REFERENCES portcullis_user_accounts (address) ON DELETE CASCADE,
    domain       text REFERENCES portcullis_domain_accounts (domain) ON DELETE CASCADE,
    -- Canonical user@domain.
    identity     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_address IS NULL) <> (domain IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS portcullis_identities_user
    ON portcullis_identities (user_address, identity) WHERE user_address IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS portcullis_identities_domain
    ON portcullis_identities (domain, identity) WHERE domain IS NOT NULL;
