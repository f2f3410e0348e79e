/*
 * lsignal.h: SIGINT/SIGTERM for the ctvnc command (see lsignal.c).
 */
#ifndef CTVNC_LSIGNAL_H
#define CTVNC_LSIGNAL_H

#include "compat.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Adds catch_signals, interrupted and release_signals to the table on top
 * of the stack. */
void ctv_open_signal(lua_State *L);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
