-- Access fails closed (docs/operations.md "Users"): seeing every vehicle is an explicit scope
-- on a user, a user whose groups are gone sees nothing; a password below today's policy must
-- be changed at the next login; geofences belong to a group. Mirrors sqlite/0011.
ALTER TABLE users ADD COLUMN all_vehicles boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;
-- what everyone saw until now: admins and users in no group saw every vehicle
UPDATE users SET all_vehicles = true
    WHERE role = 'admin' OR id NOT IN (SELECT user_id FROM group_members);
-- NULL: seen and changed only by users with every vehicle in scope (and admins); no foreign
-- key, so a deleted group's geofences stay (closed to its former members) until reassigned
ALTER TABLE geofences ADD COLUMN group_name text;
