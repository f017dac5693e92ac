-- Latest version of each order (raw.orders holds one row per extracted change).
with latest as (
    {{ latest_row(source('raw', 'orders')) }}
)
select
    id as order_id,
    customer_id,
    status,
    amount,
    created_at,
    updated_at,
    note,
    _interval_start as extracted_interval_start
from latest
