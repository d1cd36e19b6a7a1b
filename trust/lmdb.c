/* trust/lmdb.c: the growing map and transaction helpers of trust/lmdb_int.h. */
#include "trust/lmdb_int.h"

#include <stdint.h>

int trust_lmdb_grow(trust_lmdb *db)
{
    pthread_rwlock_wrlock(&db->grow);
    MDB_envinfo info;
    int rc = mdb_env_info(db->env, &info);
    if (rc == 0 && info.me_mapsize <= db->map_size) {
        if (db->map_size > SIZE_MAX / 2) {
            rc = MDB_MAP_FULL;
        } else if ((rc = mdb_env_set_mapsize(db->env, db->map_size * 2)) == 0) {
            db->map_size *= 2;
        }
    } else if (rc == 0) {
        db->map_size = info.me_mapsize; /* another thread grew it already */
    }
    pthread_rwlock_unlock(&db->grow);
    return rc;
}

int trust_lmdb_write(trust_lmdb *db, int (*fn)(void *arg, MDB_txn *txn), void *arg,
                     int max_grows)
{
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&db->grow);
        MDB_txn *txn;
        int rc = mdb_txn_begin(db->env, NULL, 0, &txn);
        if (rc == 0) {
            rc = fn(arg, txn);
            if (rc == 0) {
                rc = mdb_txn_commit(txn); /* frees |txn| even when it fails */
            } else {
                mdb_txn_abort(txn); /* a txn that saw an error is never reused */
            }
        }
        pthread_rwlock_unlock(&db->grow);
        if (rc != MDB_MAP_FULL || attempt >= max_grows) {
            return rc;
        }
        int grc = trust_lmdb_grow(db);
        if (grc != 0) {
            return grc;
        }
    }
}

int trust_lmdb_read_begin(trust_lmdb *db, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&db->grow);
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&db->grow);
    }
    return rc;
}

void trust_lmdb_read_end(trust_lmdb *db, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&db->grow);
}
