-- An erasure deletes the duplicate candidates naming the person (their reasons quote emails
-- and phones): find them without reading every scan.
CREATE INDEX duplicate_candidates_contact_a ON duplicate_candidates (contact_a);
CREATE INDEX duplicate_candidates_contact_b ON duplicate_candidates (contact_b);
