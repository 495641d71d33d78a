-- Each room row names the life of its log: a log that starts over (a reset database, a restore
-- from an older backup) comes with a new row and so a new epoch, and clients resuming with the
-- old one are told to start over. Existing rooms get one each.
ALTER TABLE rooms
    ADD COLUMN epoch text NOT NULL DEFAULT left(replace(gen_random_uuid()::text, '-', ''), 16);
