"""SQL fragments shared by the PostgreSQL store's modules: the store speaks integer
milliseconds since the Unix epoch, the tables hold timestamptz."""

# a millisecond count ({}: a column or a $n::bigint parameter) as timestamptz
MS = "(timestamptz 'epoch' + ({} * interval '1 millisecond'))"
# a timestamptz ({}: a column) as milliseconds since the epoch
EPOCH_MS = "(extract(epoch FROM {}) * 1000)::bigint"
