/* trust/lmdb_int.h: what trust/'s LMDB environments share (the contract store, trust/store.c, and
 * the receipts ledger, trust/ledger.c): a map that doubles on MDB_MAP_FULL, and the lock that
 * makes that safe, since mdb_env_set_mapsize() needs that no transaction is open in the
 * process: every transaction holds |grow| shared, growing holds it exclusive. Internal to
 * trust/; the owners open and close |env| themselves. */
#ifndef TRUST_LMDB_INT_H
#define TRUST_LMDB_INT_H
#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>

typedef struct trust_lmdb {
    MDB_env *env;
    size_t map_size;       /* the map size set last */
    pthread_rwlock_t grow; /* shared by every transaction, exclusive to grow the map */
} trust_lmdb;

/* Doubles the map (unless another thread already grew it past |db->map_size|); the caller
 * holds no transaction. Returns 0 or an LMDB code (MDB_MAP_FULL when doubling would
 * overflow). */
int trust_lmdb_grow(trust_lmdb *db);

/* One write transaction running |fn(arg, txn)|, committed when it returns 0 and aborted
 * otherwise; on MDB_MAP_FULL (from a put or from the commit) the map is doubled and |fn| runs
 * again from the start, at most |max_grows| times. |fn| returns 0, an LMDB code or the
 * owner's own error and has no effect outside the transaction. Returns what |fn|, LMDB or
 * trust_lmdb_grow() said, as is. */
int trust_lmdb_write(trust_lmdb *db, int (*fn)(void *arg, MDB_txn *txn), void *arg,
                     int max_grows);

/* A read transaction, holding |grow| shared until trust_lmdb_read_end(). Returns 0 or an LMDB
 * code (then nothing is held). */
int trust_lmdb_read_begin(trust_lmdb *db, MDB_txn **txn);
void trust_lmdb_read_end(trust_lmdb *db, MDB_txn *txn);
#endif /* TRUST_LMDB_INT_H */
