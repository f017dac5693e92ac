select
    c.customer_id,
    c.name,
    c.country,
    count(o.order_id) as orders,
    count(o.order_id) filter (where o.is_revenue) as revenue_orders,
    coalesce(sum(o.amount) filter (where o.is_revenue), 0)::numeric(14, 2) as lifetime_value,
    (coalesce(sum(o.amount) filter (where o.is_revenue), 0)
        / nullif(count(o.order_id) filter (where o.is_revenue), 0))::numeric(14, 2) as avg_order_value,
    min(o.created_at) as first_order_at,
    max(o.created_at) as last_order_at
from {{ ref('stg_customers') }} as c
left join {{ ref('fct_orders') }} as o on o.customer_id = c.customer_id
group by c.customer_id, c.name, c.country
