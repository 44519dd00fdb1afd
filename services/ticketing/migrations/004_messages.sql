-- What each message of a ticket is: the customer's (inbound), an agent's public reply, or an
-- internal note; who wrote it (the contact id, or the agent's subject) and its text. Rows
-- threaded before this migration are inbound messages without their text.
ALTER TABLE ticket_messages
    ADD COLUMN direction text NOT NULL DEFAULT 'inbound'
        CONSTRAINT ticket_messages_direction CHECK (direction IN ('inbound', 'reply', 'note')),
    ADD COLUMN author    text NOT NULL DEFAULT '',
    ADD COLUMN body      text NOT NULL DEFAULT '';

-- Where replies go: the identity the customer wrote from when the ticket opened (an email
-- address, a chat visitor id, a phone number...), as contacts names its kind.
ALTER TABLE tickets
    ADD COLUMN requester_kind text NOT NULL DEFAULT '',
    ADD COLUMN requester      text NOT NULL DEFAULT '';
