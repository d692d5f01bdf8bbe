#!/usr/bin/python3
"""k-means quality on the shared Paris data: inertia within 1% of scikit-learn's best of 10.

Both run on the same points in the same representation: 3-D unit vectors times the
Earth's radius (the extension's geometry), so inertia is the sum of squared chord metres.
"""
import time

from sklearn.cluster import KMeans

from cmltest import R, Checks, database, load_paris, unit_vectors

c = Checks()
with database("cml_t_kmeans") as conn:
    rows = load_paris(conn)
    X = unit_vectors([r[2] for r in rows], [r[3] for r in rows]) * R
    with conn.cursor() as cur:
        for k in (16, 8):
            t0 = time.time()
            ref = KMeans(n_clusters=k, n_init=10, algorithm="lloyd", random_state=0).fit(X)
            t_sk = time.time() - t0
            t0 = time.time()
            cur.execute("SELECT (cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, %s, '{\"seed\": 0}'))->>'inertia')::float8 FROM shoots", (k,))
            ours = cur.fetchone()[0]
            t_us = time.time() - t0
            rel = (ours - ref.inertia_) / ref.inertia_
            c.check(rel <= 0.01, f"k={k}: inertia {ours:.6g} vs scikit-learn best of 10 {ref.inertia_:.6g} (rel {rel:+.4%}); "
                                 f"time {t_us:.2f}s vs {t_sk:.2f}s")
        # the registry path gives the same model as the aggregate
        cur.execute("SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{\"k\": 16, \"seed\": 0}')")
        cur.execute("""SELECT (v.metrics->>'inertia')::float8,
                              (SELECT (cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 16, '{"seed": 0}'))->>'inertia')::float8 FROM shoots)
                         FROM cinematic_ml.model_versions v WHERE model_name = 'paris'""")
        a, b = cur.fetchone()
        c.check(a == b, f"train() and kmeans_fit() agree on the inertia ({a:.6g})")
        # every training point predicts to the zone k-means assigned it (labels from the window function)
        cur.execute("""SELECT count(*) FILTER (WHERE w.c <> cinematic_ml.predict_cluster(w.lat, w.lon, 'paris'))
                         FROM (SELECT lat, lon, cinematic_ml.cluster_kmeans(lat, lon, 16, '{"seed": 0}') OVER () AS c FROM shoots) w""")
        c.check(cur.fetchone()[0] == 0, "predict_cluster reproduces the training labels on every row")
c.exit()
