-- Each request once per entity it counts against: its key, team, organization, user (key
-- owner), end user and team member (team_id/user_id of the key, proxy-db.md §3.8), its key's
-- project when that project has a budget row, and each distinct budgeted tag it carries. One
-- scan of the spend logs crossed with the seven entity kinds (not seven scans), plus the requests
-- whose tag list holds a tag with a budget: a request with several such tags counts in full for
-- each of them (no split, unlike fct_spend_by_tag_daily).
{{ entity_requests() }}
