--- ctvnc.gateway.state: what configure made, read by every part of the
-- gateway at request time: conf (the checked settings), client (ctvnc's
-- CloudTower client), ticket (the ticket minter), book (the session book),
-- store (the sessions' store), generation (this configuration's number).
return {}
