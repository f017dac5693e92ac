with latest as (
    {{ latest_row(source('raw', 'payments')) }}
)
select
    id as payment_id,
    order_id,
    amount,
    method,
    paid_at,
    updated_at
from latest
