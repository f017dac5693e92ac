with latest as (
    {{ latest_row(source('raw', 'customers')) }}
)
select
    id as customer_id,
    name,
    lower(email) as email,
    country,
    created_at,
    updated_at
from latest
