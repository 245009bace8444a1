-- One chat message may show several alerts of one account (one poll's
-- worth). Each row keeps the notice the message last showed for its alert,
-- so that an edit for one alert redraws the others as they were; rows from
-- before this have none and show only what changes next.
ALTER TABLE chat_messages ADD COLUMN notice TEXT;
ALTER TABLE chat_messages ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chat_messages_by_message ON chat_messages (channel, message);
